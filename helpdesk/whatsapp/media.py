"""Media files users send, kept under `var/media/` by content hash.

The same picture sent twice is one file. Written atomically (temporary file, then rename),
so a reader never sees half a file.

Nothing the sender says about a file decides how it is kept. Its type is read from its first
bytes (`detect_type`), not from the claimed MIME type or the file name's extension, and a
file whose content is not a type the channel accepts is refused (`identify`). The stored
name is the content's SHA-256 and the extension of the detected type; the sender's file name
is only display metadata, cleaned by `display_name` (no control or direction characters, no
path, at most 100 characters, the extension of the detected type) before anything
(Chatwoot, an LLM) sees it.

The signatures are a small table here rather than a library: none is in the environment
(`filetype`, `python-magic`), python-magic needs the system's libmagic, and the channel takes
a dozen formats whose signatures are fixed by their specifications.
"""
import hashlib
import mimetypes
import os
import re
import tempfile
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

from helpdesk.settings import load_settings
from helpdesk.whatsapp.gateway import MediaError

_EXTENSIONS = {
    "image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "image/gif": ".gif",
    "image/heic": ".heic", "audio/ogg": ".ogg", "audio/mpeg": ".mp3", "audio/mp4": ".m4a",
    "audio/aac": ".aac", "audio/amr": ".amr", "audio/wav": ".wav", "application/pdf": ".pdf",
    "video/mp4": ".mp4", "video/3gpp": ".3gp", "video/quicktime": ".mov",
    "video/webm": ".webm", "text/plain": ".txt",
    "application/msword": ".doc", "application/vnd.ms-excel": ".xls",
    "application/vnd.ms-powerpoint": ".ppt",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ".pptx",
}

DISPLAY_NAME_MAX = 100

OCTET_STREAM = "application/octet-stream"
_OLE_TYPES = ("application/msword", "application/vnd.ms-excel",
              "application/vnd.ms-powerpoint")
_OOXML = {b"word/": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
          b"xl/": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
          b"ppt/": "application/vnd.openxmlformats-officedocument.presentationml.presentation"}
# ISO base media (ftyp) brands that are not plain MP4 video
_FTYP_BRANDS = {b"M4A ": "audio/mp4", b"M4B ": "audio/mp4", b"3gp": "video/3gpp",
                b"3g2": "video/3gpp", b"qt  ": "video/quicktime", b"heic": "image/heic",
                b"heix": "image/heic", b"mif1": "image/heic", b"msf1": "image/heic"}
# text that a browser or a shell would run or render: never taken as plain text
_ACTIVE_TEXT = (b"<!doctype", b"<html", b"<head", b"<body", b"<script", b"<svg", b"<?xml",
                b"<?php", b"<iframe", b"<meta", b"<a ", b"<div", b"<img", b"#!")


@dataclass(frozen=True)
class StoredMedia:
    path: str
    sha256: str
    size: int
    mime_type: str
    kind: str
    filename: Optional[str] = None  # the sender's name, cleaned (display only)

    def to_dict(self) -> Dict[str, object]:
        return asdict(self)


def media_dir() -> Path:
    return load_settings().var_dir / "media"


def _base(mime_type: Optional[str]) -> str:
    return (mime_type or "").split(";")[0].strip().lower()


def extension_for(mime_type: str) -> str:
    """The stored file's extension, from the (detected) type only."""
    base = _base(mime_type)
    return _EXTENSIONS.get(base) or mimetypes.guess_extension(base) or ".bin"


# --- what a file is ------------------------------------------------------------------------

def _ftyp(data: bytes, claimed: str) -> str:
    brand = data[8:12]
    for prefix, mime in _FTYP_BRANDS.items():
        if brand.startswith(prefix):
            return mime
    # MP4 holds sound or pictures alike: the claim only chooses between audio and video
    return "audio/mp4" if claimed.startswith("audio/") else "video/mp4"


def _zip(data: bytes, claimed: str) -> str:
    # an Office Open XML file is a ZIP whose entries are named word/…, xl/… or ppt/…
    for folder, mime in _OOXML.items():
        if b"[Content_Types].xml" in data and folder in data:
            return mime
    return "application/zip"


def _ole(data: bytes, claimed: str) -> str:
    # old Office files are OLE2 compound files; which application's is inside the
    # container, so a claim of one of them is taken (anything else: not an Office file)
    return claimed if claimed in _OLE_TYPES else "application/x-ole-storage"


def _mpeg_audio(data: bytes) -> Optional[str]:
    if data.startswith(b"ID3"):
        return "audio/mpeg"
    if len(data) >= 2 and data[0] == 0xFF:
        if data[1] in (0xF1, 0xF9):
            return "audio/aac"  # ADTS
        if data[1] & 0xE0 == 0xE0 and data[1] & 0x06:
            return "audio/mpeg"  # MPEG audio frame sync, layer I-III
    return None


_SIGNATURES: Tuple[Tuple[int, bytes, Callable[[bytes, str], str]], ...] = (
    (0, b"\xff\xd8\xff", lambda data, claimed: "image/jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", lambda data, claimed: "image/png"),
    (0, b"GIF87a", lambda data, claimed: "image/gif"),
    (0, b"GIF89a", lambda data, claimed: "image/gif"),
    (0, b"%PDF-", lambda data, claimed: "application/pdf"),
    (0, b"OggS", lambda data, claimed: "video/ogg" if claimed == "video/ogg" else "audio/ogg"),
    (0, b"#!AMR", lambda data, claimed: "audio/amr"),
    (0, b"\x1a\x45\xdf\xa3", lambda data, claimed: "video/webm"),
    (4, b"ftyp", _ftyp),
    (0, b"PK\x03\x04", _zip),
    (0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", _ole),
    (0, b"\x7fELF", lambda data, claimed: "application/x-executable"),
)


# control characters (Unicode Cc) other than tab, newline, form feed and carriage return
_CONTROL = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
_LEADING_SPACE = re.compile(r"\s*")


def _text_type(data: bytes) -> Optional[str]:
    """text/plain for UTF-8 text without control characters; text/html (or a script) for
    markup or a shebang; None when it is not text."""
    if b"\x00" in data:
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    if _CONTROL.search(text):  # a regex: a 16 MB file is checked in milliseconds
        return None
    start = _LEADING_SPACE.match(text).end()
    head = text[start:start + 512].lower().encode()
    if head.startswith(_ACTIVE_TEXT) or b"<script" in head or b"<html" in head:
        return "text/x-script" if head.startswith(b"#!") else "text/html"
    return "text/plain"


def detect_type(data: bytes, claimed: Optional[str] = None) -> Optional[str]:
    """The MIME type the bytes are, from their signature; None when they are none we know.

    The claim (the sender's MIME type) never makes a file something it is not; it only picks
    between types one signature covers (audio or video MP4, which old Office file)."""
    claim = _base(claimed)
    for offset, magic, mime_for in _SIGNATURES:
        if data[offset:offset + len(magic)] == magic:
            return mime_for(data, claim)
    if data[:4] == b"RIFF":
        form = data[8:12]
        return {b"WEBP": "image/webp", b"WAVE": "audio/wav"}.get(form, "application/x-riff")
    audio = _mpeg_audio(data)
    if audio:
        return audio
    return _text_type(data)


def identify(data: bytes, claimed: Optional[str], accepted: Callable[[str], bool]
             ) -> str:
    """The type to keep a file as: what its bytes are, if the channel accepts that type.

    A real JPEG sent as "application/pdf" is kept as the JPEG it is. Refused (MediaError,
    refused) when the content is a type not accepted (an executable, HTML, a script), when it
    matches no signature, or when a claim of a binary format (an image, a PDF…) turns out to
    be plain text: a text file is taken as text only when it was sent as text."""
    claim = _base(claimed) or OCTET_STREAM
    detected = detect_type(data, claim)
    if detected == "text/plain" and not (claim.startswith("text/") or claim == OCTET_STREAM):
        raise MediaError(f"content is text, sent as {claim}: refused", refused=True)
    if detected is None or not accepted(detected):
        raise MediaError(f"content is {detected or 'of no known type'}, sent as {claim}: "
                         "not accepted", refused=True)
    return detected


_FAMILIES = {"image": ("image", "sticker"), "audio": ("audio", "voice"), "video": ("video",)}


def kind_for(mime_type: str, claimed_kind: str) -> str:
    """The message's media kind for the detected type: the sender's kind when it fits the
    type (a voice note stays a voice note), else the type's own (a "document" that is a JPEG
    is an image)."""
    family = _base(mime_type).split("/")[0]
    own = family if family in _FAMILIES else "document"
    return claimed_kind if claimed_kind in _FAMILIES.get(own, ("document",)) else own


# --- the sender's file name ------------------------------------------------------------

_SEPARATORS = re.compile(r"[/\\]")


def display_name(filename: Optional[str]) -> Optional[str]:
    """The sender's file name, safe to show and to hand on as an attachment's name: no
    control, format or direction characters (NUL, U+202E…), no path (only what follows the
    last / or \\), no leading dots or spaces, at most DISPLAY_NAME_MAX characters (the
    extension kept). None when nothing is left."""
    if not isinstance(filename, str):
        return None
    text = unicodedata.normalize("NFC", filename)
    text = "".join(" " if unicodedata.category(ch) in ("Zl", "Zp") or ch in "\t\n\r" else ch
                   for ch in text
                   if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn")
                   or ch in "\t\n\r")
    text = _SEPARATORS.split(text)[-1]
    text = " ".join(text.split()).lstrip(". ").rstrip(" ")
    if not text:
        return None
    if len(text) > DISPLAY_NAME_MAX:
        stem, dot, suffix = text.rpartition(".")
        if dot and stem and 0 < len(suffix) <= 10:
            text = stem[: DISPLAY_NAME_MAX - len(suffix) - 1].rstrip() + "." + suffix
        else:
            text = text[:DISPLAY_NAME_MAX].rstrip()
    return text


def _shown_as(filename: Optional[str], mime_type: str) -> Optional[str]:
    """The display name with an extension that says what the file is: "factura.pdf" that is
    a JPEG is shown (and handed to Chatwoot) as "factura.jpg", never as something an
    agent's computer would open with another program."""
    shown = display_name(filename)
    if shown is None:
        return None
    base = _base(mime_type)
    if mimetypes.guess_type(shown)[0] == base or base == OCTET_STREAM:
        return shown
    stem, dot, suffix = shown.rpartition(".")
    if not (dot and stem and len(suffix) <= 10):
        stem = shown
    return display_name(stem + extension_for(base))


# --- storing -----------------------------------------------------------------------------

def store(data: bytes, mime_type: str, kind: str, filename: Optional[str] = None,
          directory: Optional[Path] = None) -> StoredMedia:
    """Keep the bytes as `<sha256>.<extension of mime_type>` (pass the detected type, see
    `identify`); `filename` is the sender's, kept cleaned as display metadata only.
    Blocking file I/O: call it in a thread from async code."""
    digest = hashlib.sha256(data).hexdigest()
    folder = (directory or media_dir()) / digest[:2]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest}{extension_for(mime_type)}"
    if not path.exists():
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".incoming-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    else:
        # the same bytes sent again: retention goes by the file's time (workers/retention_jobs.py)
        os.utime(path)
    return StoredMedia(str(path), digest, len(data), _base(mime_type), kind,
                       _shown_as(filename, mime_type))


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
