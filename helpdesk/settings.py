"""Settings from the environment (and `.env` when present). Secrets are read only here.

Every variable is documented in `.env.example`. Anything unset disables that integration.
"""
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from dotenv import load_dotenv

PROJECT_DIR = Path(__file__).resolve().parent.parent

# `.env` never overrides what the process environment already says (tests and CI rely on it).
load_dotenv(PROJECT_DIR / ".env", override=False)


def _env(name: str, default: Optional[str] = None) -> Optional[str]:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip()


@dataclass(frozen=True)
class Settings:
    redis_url: str
    database_url: str
    rasa_port: int
    actions_port: int
    rasa_auth_token: Optional[str]
    log_level: str
    config_dir: Path
    var_dir: Path


def load_settings() -> Settings:
    var_dir = Path(_env("HELPDESK_VAR_DIR", str(PROJECT_DIR / "var")))
    return Settings(
        redis_url=_env("REDIS_URL", "redis://127.0.0.1:6379/0"),
        database_url=_env("DATABASE_URL", f"sqlite:///{var_dir / 'ledger.sqlite3'}"),
        rasa_port=int(_env("RASA_PORT", "5005")),
        actions_port=int(_env("ACTIONS_PORT", "5055")),
        rasa_auth_token=_env("RASA_AUTH_TOKEN"),
        log_level=_env("LOG_LEVEL", "INFO").upper(),
        config_dir=Path(_env("HELPDESK_CONFIG_DIR", str(PROJECT_DIR / "config"))),
        var_dir=var_dir,
    )
