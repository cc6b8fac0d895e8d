"""Secrets the processes of one installation share without the operator having to invent them.

A secret comes from its environment variable (`.env`) when the operator sets one; otherwise
it is generated once, on first use, into `var/secrets/<name>` (a directory only the owner can
enter, a file only the owner can read) and every later process of this installation reads
the same value. Nothing here is ever passed on a command line or logged.
"""
import os
import secrets
import time
from pathlib import Path
from typing import Optional

SECRETS_DIR = "secrets"
# characters of a generated secret: URL- and header-safe, 256 bits
_TOKEN_BYTES = 32


def secrets_dir(var_dir: Path) -> Path:
    path = Path(var_dir) / SECRETS_DIR
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def local_secret(name: str, var_dir: Path, env_value: Optional[str] = None) -> str:
    """`env_value` when set and not blank, else this installation's generated `name`.

    Two processes starting at once agree: the file is created exclusively, and the loser of
    that race reads what the winner wrote.
    """
    if env_value and env_value.strip():
        return env_value.strip()
    if not name or "/" in name or name.startswith("."):
        raise ValueError(f"not a secret name: {name!r}")
    path = secrets_dir(var_dir) / name
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read(path)
    value = secrets.token_urlsafe(_TOKEN_BYTES)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(value + "\n")
    return value


def _read(path: Path) -> str:
    # the creator may not have written yet: a few short waits, then what is there
    for _ in range(50):
        value = path.read_text(encoding="ascii").strip()
        if value:
            return value
        time.sleep(0.02)
    raise RuntimeError(f"{path} is empty: delete it and start again")
