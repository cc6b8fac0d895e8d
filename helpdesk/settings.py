"""Settings from the environment (and `.env` when present). Secrets are read only here.

Every variable is documented in `.env.example`. Anything unset disables that integration.
"""
import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

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


# --- external systems ---------------------------------------------------------------
# Each loader returns None when the integration is not configured, so callers can say
# "not configured" in one place and the bot still runs without it.


@dataclass(frozen=True)
class WahaSettings:
    base_url: str
    api_key: Optional[str]
    session: str
    hmac_key: Optional[str]


def load_waha() -> Optional[WahaSettings]:
    base_url = _env("WAHA_BASE_URL")
    if not base_url:
        return None
    return WahaSettings(
        base_url=base_url.rstrip("/"),
        api_key=_env("WAHA_API_KEY"),
        session=_env("WAHA_SESSION", "default"),
        hmac_key=_env("WAHA_WEBHOOK_HMAC_KEY"),
    )


@dataclass(frozen=True)
class MetaSettings:
    access_token: str
    app_secret: Optional[str]
    verify_token: Optional[str]
    phone_number_id: str
    graph_url: str
    api_version: str


def load_meta() -> Optional[MetaSettings]:
    token = _env("META_ACCESS_TOKEN")
    phone_number_id = _env("META_PHONE_NUMBER_ID")
    if not token or not phone_number_id:
        return None
    version = _env("META_API_VERSION", "v21.0")
    if not version.startswith("v"):
        version = f"v{version}"
    return MetaSettings(
        access_token=token,
        app_secret=_env("META_APP_SECRET"),
        verify_token=_env("META_VERIFY_TOKEN"),
        phone_number_id=phone_number_id,
        graph_url=_env("META_GRAPH_URL", "https://graph.facebook.com").rstrip("/"),
        api_version=version,
    )


@dataclass(frozen=True)
class ZohoSettings:
    accounts_url: str
    desk_url: str
    client_id: str
    client_secret: str
    refresh_token: str
    org_id: str
    ref_field: Optional[str]


def load_zoho() -> Optional[ZohoSettings]:
    values = {name: _env(f"ZOHO_{name.upper()}") for name in
              ("client_id", "client_secret", "refresh_token", "org_id")}
    if not all(values.values()):
        return None
    return ZohoSettings(
        accounts_url=_env("ZOHO_ACCOUNTS_URL", "https://accounts.zoho.com").rstrip("/"),
        desk_url=_env("ZOHO_DESK_URL", "https://desk.zoho.com").rstrip("/"),
        ref_field=_env("ZOHO_REF_FIELD"),
        **values,
    )


@dataclass(frozen=True)
class ChatwootSettings:
    url: str
    api_token: str
    account_id: str
    inbox_id: str
    webhook_token: Optional[str]
    webhook_secret: Optional[str]


def load_chatwoot() -> Optional[ChatwootSettings]:
    url, token = _env("CHATWOOT_URL"), _env("CHATWOOT_API_TOKEN")
    account, inbox = _env("CHATWOOT_ACCOUNT_ID"), _env("CHATWOOT_INBOX_ID")
    if not (url and token and account and inbox):
        return None
    return ChatwootSettings(
        url=url.rstrip("/"),
        api_token=token,
        account_id=account,
        inbox_id=inbox,
        webhook_token=_env("CHATWOOT_WEBHOOK_TOKEN"),
        webhook_secret=_env("CHATWOOT_WEBHOOK_SECRET"),
    )


@dataclass(frozen=True)
class LlmSettings:
    base_url: Optional[str]
    api_key: Optional[str]
    model: Optional[str]
    vision_model: Optional[str]
    embedding_model: Optional[str]
    transcribe_model: Optional[str]
    fallbacks: Optional[str]


def load_llm() -> Optional[LlmSettings]:
    base_url, model = _env("LLM_BASE_URL"), _env("LLM_MODEL")
    if not base_url and not model:
        return None
    return LlmSettings(
        base_url=base_url,
        api_key=_env("LLM_API_KEY"),
        model=model,
        vision_model=_env("LLM_VISION_MODEL"),
        embedding_model=_env("LLM_EMBEDDING_MODEL"),
        transcribe_model=_env("LLM_TRANSCRIBE_MODEL"),
        fallbacks=_env("LLM_FALLBACKS"),
    )


def support_escalation_chat() -> Optional[str]:
    return _env("SUPPORT_ESCALATION_CHAT")


# --- webhook secrets ----------------------------------------------------------------
# A channel that receives webhooks refuses to start without its secret; this development
# setting lets it start and accept unsigned deliveries instead (with a warning).
INSECURE_WEBHOOKS = "HELPDESK_INSECURE_WEBHOOKS"
WEBHOOK_SECRETS = {
    "WAHA": "WAHA_WEBHOOK_HMAC_KEY",
    "Meta": "META_APP_SECRET",
    "Chatwoot": "CHATWOOT_WEBHOOK_TOKEN or CHATWOOT_WEBHOOK_SECRET",
}


def insecure_webhooks() -> bool:
    return (_env(INSECURE_WEBHOOKS) or "").lower() in ("1", "true", "yes", "on")


def unsigned_webhooks() -> List[str]:
    """The configured channels (WEBHOOK_SECRETS' names) whose webhook secret is unset."""
    waha, meta, chatwoot = load_waha(), load_meta(), load_chatwoot()
    found = []
    if waha and not waha.hmac_key:
        found.append("WAHA")
    if meta and not meta.app_secret:
        found.append("Meta")
    if chatwoot and not (chatwoot.webhook_token or chatwoot.webhook_secret):
        found.append("Chatwoot")
    return found


def unsigned_webhooks_message(channels: List[str]) -> str:
    """One line for the operator: which channels, which variables, the development setting."""
    names = " and ".join(channels)
    variables = " and ".join(WEBHOOK_SECRETS[c] for c in channels)
    if insecure_webhooks():
        return (f"{names} webhook{'s' if len(channels) > 1 else ''} accept unsigned deliveries "
                f"because {INSECURE_WEBHOOKS}=true: for development only; set {variables} "
                "in .env before going live")
    return (f"refusing to start: the {names} webhook{'s have' if len(channels) > 1 else ' has'} "
            f"no secret, so anyone could post to {'them' if len(channels) > 1 else 'it'}. "
            f"Set {variables} in .env (or {INSECURE_WEBHOOKS}=true for development only)")
