"""Media files users send, kept under `var/media/` by content hash.

The same picture sent twice is one file. Written atomically (temporary file, then rename),
so a reader never sees half a file.
"""
import hashlib
import mimetypes
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Optional

from helpdesk.settings import load_settings

_EXTENSIONS = {
    "image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp",
    "audio/ogg": ".ogg", "audio/mpeg": ".mp3", "audio/mp4": ".m4a", "application/pdf": ".pdf",
    "video/mp4": ".mp4", "text/plain": ".txt",
}


@dataclass(frozen=True)
class StoredMedia:
    path: str
    sha256: str
    size: int
    mime_type: str
    kind: str
    filename: Optional[str] = None

    def to_dict(self) -> Dict[str, object]:
        return asdict(self)


def media_dir() -> Path:
    return load_settings().var_dir / "media"


def extension_for(mime_type: str, filename: Optional[str] = None) -> str:
    if filename and Path(filename).suffix:
        return Path(filename).suffix.lower()[:10]
    base = mime_type.split(";")[0].strip().lower()
    return _EXTENSIONS.get(base) or mimetypes.guess_extension(base) or ".bin"


def store(data: bytes, mime_type: str, kind: str, filename: Optional[str] = None,
          directory: Optional[Path] = None) -> StoredMedia:
    """Blocking file I/O: call it in a thread from async code."""
    digest = hashlib.sha256(data).hexdigest()
    folder = (directory or media_dir()) / digest[:2]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest}{extension_for(mime_type, filename)}"
    if not path.exists():
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".incoming-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    return StoredMedia(str(path), digest, len(data), mime_type.split(";")[0].strip(), kind,
                       filename)


def in_media_dir(path: object, directory: Optional[Path] = None) -> bool:
    """True when `path` names something inside the media directory once resolved (`..` and
    symlinks followed): the only files an action attaches or a worker uploads. A path from a
    tracker or a ledger row is not trusted: a forged action call could name `.env`."""
    if not isinstance(path, str) or not path or "\x00" in path:
        return False
    try:
        root = os.path.realpath(directory or media_dir())
        real = os.path.realpath(path)
    except (OSError, ValueError):
        return False
    return real != root and os.path.commonpath([real, root]) == root
