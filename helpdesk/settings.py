"""Settings from the environment (and `.env` when present). Secrets are read only here.

Every variable is documented in `.env.example`. Anything unset disables that integration.
"""
import ipaddress
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import List, Optional, Tuple
from urllib.parse import quote, urlparse

from dotenv import load_dotenv

from helpdesk.local_secrets import local_secret

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
    # where the action server listens (ACTIONS_HOST); Rasa calls it on 127.0.0.1
    actions_host: str = "127.0.0.1"


def load_settings() -> Settings:
    var_dir = Path(_env("HELPDESK_VAR_DIR", str(PROJECT_DIR / "var")))
    return Settings(
        redis_url=with_local_redis_password(_env("REDIS_URL", "redis://127.0.0.1:6379/0"), var_dir),
        database_url=_env("DATABASE_URL", f"sqlite:///{var_dir / 'ledger.sqlite3'}"),
        rasa_port=int(_env("RASA_PORT", "5005")),
        actions_port=int(_env("ACTIONS_PORT", "5055")),
        rasa_auth_token=_env("RASA_AUTH_TOKEN"),
        log_level=_env("LOG_LEVEL", "INFO").upper(),
        config_dir=Path(_env("HELPDESK_CONFIG_DIR", str(PROJECT_DIR / "config"))),
        var_dir=var_dir,
        actions_host=_env("ACTIONS_HOST", "127.0.0.1"),
    )


# --- secrets every process of this installation shares ---------------------------------
# (helpdesk/local_secrets.py: from .env when set, else generated once into var/secrets/)


def action_server_token(settings: Settings) -> str:
    """The shared secret Rasa sends the action server (`Authorization: Bearer ...`)."""
    return _generated("action_server_token", str(settings.var_dir), _env("ACTION_SERVER_TOKEN"))


def is_own_redis(redis_url: str) -> bool:
    """A Redis on this machine (loopback), without a password in REDIS_URL: the one `make run`
    starts (helpdesk/launch.py `redis`), which then gets the generated password."""
    parsed = urlparse(redis_url)
    if parsed.scheme != "redis" or parsed.password:
        return False
    host = parsed.hostname or "127.0.0.1"
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def with_local_redis_password(redis_url: str, var_dir: Path) -> str:
    """REDIS_URL, with the installation's generated Redis password when it names the project's
    own Redis without one (`is_own_redis`); an operator's password is kept as it is."""
    if not is_own_redis(redis_url):
        return redis_url
    parsed = urlparse(redis_url)
    password = _generated("redis_password", str(var_dir), None)
    user = quote(parsed.username or "", safe="")
    address = parsed.netloc.rsplit("@", 1)[-1] or "127.0.0.1:6379"
    return parsed._replace(netloc=f"{user}:{quote(password, safe='')}@{address}").geturl()


@lru_cache(maxsize=64)
def _generated(name: str, var_dir: str, env_value: Optional[str]) -> str:
    # settings are loaded per call in places: read var/secrets/ once per process
    return local_secret(name, Path(var_dir), env_value)


# --- external systems ---------------------------------------------------------------
# Each loader returns None when the integration is not configured, so callers can say
# "not configured" in one place and the bot still runs without it.


@dataclass(frozen=True)
class WahaSettings:
    base_url: str
    api_key: Optional[str]
    session: str
    hmac_key: Optional[str]
    # MEDIA_ALLOWED_HOSTS: hosts besides the gateway that media may come from (no key sent)
    media_hosts: Tuple[str, ...] = ()


def _hosts(name: str) -> Tuple[str, ...]:
    """A comma-separated list of hosts (checked where it is used: helpdesk/whatsapp)."""
    return tuple(part.strip() for part in (_env(name) or "").split(",") if part.strip())


def load_waha() -> Optional[WahaSettings]:
    base_url = _env("WAHA_BASE_URL")
    if not base_url:
        return None
    return WahaSettings(
        base_url=base_url.rstrip("/"),
        api_key=_env("WAHA_API_KEY"),
        session=_env("WAHA_SESSION", "default"),
        hmac_key=_env("WAHA_WEBHOOK_HMAC_KEY"),
        media_hosts=_hosts("MEDIA_ALLOWED_HOSTS"),
    )


@dataclass(frozen=True)
class MetaSettings:
    access_token: str
    app_secret: Optional[str]
    verify_token: Optional[str]
    phone_number_id: str
    graph_url: str
    api_version: str
    # MEDIA_ALLOWED_HOSTS, as for WAHA (no token sent)
    media_hosts: Tuple[str, ...] = ()
    # META_MEDIA_HOSTS: Meta's own download hosts besides the built-in ones (token sent)
    cdn_hosts: Tuple[str, ...] = ()


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
        media_hosts=_hosts("MEDIA_ALLOWED_HOSTS"),
        cdn_hosts=_hosts("META_MEDIA_HOSTS"),
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


# --- the Rasa server's doors -----------------------------------------------------------
# Secrets from .env when set, else generated once into var/secrets/ (helpdesk/local_secrets.py),
# so the HTTP API and the REST channel are never open, even on loopback.


def rasa_host() -> str:
    """Where the Rasa server listens (RASA_HOST): loopback unless the operator says otherwise;
    the webhooks reach the world through the ingress (INGRESS_HOST/PORT)."""
    return _env("RASA_HOST", "127.0.0.1")


def rasa_api_secret(settings: Settings) -> str:
    """The key of Rasa's HTTP API: RASA_AUTH_TOKEN, or the generated `rasa_auth_token`. The
    Rasa server checks HS256 JWTs signed with it (`Authorization: Bearer`, helpdesk/rasa_api.py
    mints them); it is never sent itself, nor accepted as `?token=`."""
    return _generated("rasa_auth_token", str(settings.var_dir), settings.rasa_auth_token)


def rest_channel_enabled() -> bool:
    """REST_CHANNEL_ENABLED=true: the REST channel (`make shell`, tests, benchmarks) is served;
    off by default, since whoever can reach it can write as any user."""
    return (_env("REST_CHANNEL_ENABLED", "false") or "").lower() in ("1", "true", "yes", "on")


def rest_channel_token(settings: Settings) -> str:
    """The REST channel's token (`Authorization: Bearer`): REST_CHANNEL_TOKEN, or the
    generated `rest_channel_token`."""
    return _generated("rest_channel_token", str(settings.var_dir), _env("REST_CHANNEL_TOKEN"))
