"""The WhatsApp channels' settings from `config/channels.yml`, checked on load."""
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from helpdesk.config.reader import read_yaml, require_key
from helpdesk.errors import ConfigError
from helpdesk.text import fold
from helpdesk.settings import load_settings


@dataclass(frozen=True)
class ChannelConfig:
    max_body_bytes: int
    dedupe_ttl_seconds: int
    replay_margin_seconds: int
    max_clock_skew_seconds: int
    max_id_chars: int
    max_concurrent_turns: int
    inbound_partitions: int
    lease_seconds: float
    turn_retry_seconds: Tuple[float, ...]
    turn_timeout_seconds: float
    outage_retry_seconds: float
    max_starts: int
    max_message_chars: int
    debounce_ms: int
    debounce_max_chars: int
    rate_messages: int
    rate_window_seconds: int
    rate_cooldown_seconds: int
    optout_words: Tuple[str, ...]
    optin_words: Tuple[str, ...]
    media_max_bytes: int
    media_allowed_types: Tuple[str, ...]
    media_timeout_seconds: float
    media_fetch_concurrency: int
    media_fetch_claim_seconds: float
    media_fetch_wait_seconds: float
    incident_confidence: float
    incident_intents: Tuple[str, ...]
    engaged_minutes: float
    ask_in: str
    quote_reports: bool
    ticket_reaction: str
    context_minutes: float
    context_messages: int
    send_attempts: int
    send_retry_delay_ms: int
    send_timeout_seconds: float
    outbox_backoff_seconds: Tuple[float, ...]
    outbox_max_age_seconds: float
    read_receipts: bool
    typing: bool
    reengagement_template: Optional[Dict[str, str]]
    texts: Dict[str, str]
    human_notices: Dict[str, str]

    @property
    def replay_window_seconds(self) -> int:
        """How old a message's provider timestamp may be and still be recorded."""
        return self.dedupe_ttl_seconds - self.replay_margin_seconds

    def media_allowed(self, mime_type: Optional[str]) -> bool:
        mime = (mime_type or "").lower()
        return any(mime.startswith(prefix) for prefix in self.media_allowed_types)

    def opt_word(self, text: str) -> Optional[str]:
        """"out" / "in" when the whole message is an opt-out / opt-in word, else None."""
        folded = fold(text)
        if folded in self.optout_words:
            return "out"
        if folded in self.optin_words:
            return "in"
        return None

    def text(self, key: str) -> str:
        return self.texts[key]


MAX_PARTITIONS = 1024

_NOTICE_KEYS = ("inbound_parked", "outbound_parked", "refused_waha", "refused_whatsapp",
                "session_down_waha")
_TEXT_KEYS = ("actions_unavailable", "message_parked", "unsupported", "media_unavailable", "media_too_large", "rate_limited",
              "voice_needs_text", "voice_understood", "message_edited", "message_revoked")


def load_channel_config(path: Path) -> ChannelConfig:
    data = read_yaml(path)
    where = path.name
    section = {}
    for name in ("webhook", "inbound", "rate_limit", "optout", "media", "groups", "outbound",
                 "texts", "human_notices"):
        section[name] = require_key(data, name, dict, where)
    texts = section["texts"]
    for key in _TEXT_KEYS:
        if not isinstance(texts.get(key), str) or not texts[key].strip():
            raise ConfigError(f"{where}: texts.{key} must be a non-empty text")
    notices = section["human_notices"]
    for key in _NOTICE_KEYS:
        if not isinstance(notices.get(key), str) or not notices[key].strip():
            raise ConfigError(f"{where}: human_notices.{key} must be a non-empty text")
    retries = require_key(section["inbound"], "retry_seconds", list, f"{where} inbound")
    if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0
               for x in retries):
        raise ConfigError(f"{where}: inbound.retry_seconds must be numbers of seconds")
    groups = section["groups"]
    ask_in = require_key(groups, "ask_in", str, f"{where} groups")
    if ask_in not in ("group", "direct"):
        raise ConfigError(f"{where}: groups.ask_in must be 'group' or 'direct', not {ask_in!r}")
    backoff = require_key(section["outbound"], "outbox_backoff_seconds", list, f"{where} outbound")
    if not backoff or not all(isinstance(x, (int, float)) and x > 0 for x in backoff):
        raise ConfigError(f"{where}: outbound.outbox_backoff_seconds must be positive numbers")
    template = (data.get("meta") or {}).get("reengagement_template")
    if template is not None and not (isinstance(template, dict) and template.get("name")):
        raise ConfigError(f"{where}: meta.reengagement_template needs a name")

    def number(part: str, key: str, kind: Any = int) -> Any:
        if key not in section[part]:
            raise ConfigError(f"{where}: {part}.{key} is missing")
        value = section[part][key]
        # YAML's yes/no are booleans, and booleans are ints in Python: refuse them here
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: {part}.{key} must be a number, not {value!r}")
        if value < 0:
            raise ConfigError(f"{where}: {part}.{key} must not be negative")
        return kind(value)

    def flag(part: str, key: str) -> bool:
        value = section[part].get(key, False)
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {part}.{key} must be true or false, not {value!r}")
        return value

    reaction = groups.get("ticket_reaction") or ""
    if not isinstance(reaction, str) or len(reaction) > 8 or reaction.strip() != reaction:
        raise ConfigError(f"{where}: groups.ticket_reaction must be one emoji or \"\"")

    dedupe_ttl = number("webhook", "dedupe_ttl_seconds")
    margin = number("webhook", "replay_margin_seconds")
    if margin >= dedupe_ttl:
        raise ConfigError(f"{where}: webhook.replay_margin_seconds must be smaller than "
                          "webhook.dedupe_ttl_seconds")
    partitions = number("inbound", "partitions")
    if not 1 <= partitions <= MAX_PARTITIONS:
        raise ConfigError(f"{where}: inbound.partitions must be from 1 to {MAX_PARTITIONS}")
    lease = number("inbound", "lease_seconds", float)
    if lease <= 0:
        raise ConfigError(f"{where}: inbound.lease_seconds must be more than 0")
    if number("webhook", "max_id_chars") < 1:
        raise ConfigError(f"{where}: webhook.max_id_chars must be at least 1")
    return ChannelConfig(
        max_body_bytes=number("webhook", "max_body_bytes"),
        dedupe_ttl_seconds=dedupe_ttl,
        replay_margin_seconds=margin,
        max_clock_skew_seconds=number("webhook", "max_clock_skew_seconds"),
        max_id_chars=number("webhook", "max_id_chars"),
        max_concurrent_turns=max(1, number("inbound", "max_concurrent_turns")),
        inbound_partitions=partitions,
        lease_seconds=lease,
        turn_retry_seconds=tuple(float(x) for x in retries),
        turn_timeout_seconds=max(0.001, number("inbound", "turn_timeout_seconds", float)),
        outage_retry_seconds=max(0.1, number("inbound", "outage_retry_seconds", float)),
        max_starts=max(1, number("inbound", "max_starts")),
        max_message_chars=number("inbound", "max_message_chars"),
        debounce_ms=number("inbound", "debounce_ms"),
        debounce_max_chars=number("inbound", "debounce_max_chars"),
        rate_messages=number("rate_limit", "messages"),
        rate_window_seconds=max(1, number("rate_limit", "window_seconds")),
        rate_cooldown_seconds=number("rate_limit", "cooldown_seconds"),
        optout_words=tuple(fold(w) for w in require_key(section["optout"], "out_words", list, where)),
        optin_words=tuple(fold(w) for w in require_key(section["optout"], "in_words", list, where)),
        media_max_bytes=number("media", "max_bytes"),
        media_allowed_types=tuple(
            str(t).lower() for t in require_key(section["media"], "allowed_types", list, where)
        ),
        media_timeout_seconds=number("media", "timeout_seconds", float),
        media_fetch_concurrency=max(1, number("media", "fetch_concurrency")),
        media_fetch_claim_seconds=max(0.1, number("media", "fetch_claim_seconds", float)),
        media_fetch_wait_seconds=number("media", "fetch_wait_seconds", float),
        incident_confidence=number("groups", "incident_confidence", float),
        incident_intents=tuple(require_key(groups, "incident_intents", list, where)),
        engaged_minutes=number("groups", "engaged_minutes", float),
        ask_in=ask_in,
        quote_reports=flag("groups", "quote_reports"),
        ticket_reaction=reaction,
        context_minutes=number("groups", "context_minutes", float),
        context_messages=number("groups", "context_messages"),
        send_attempts=max(1, number("outbound", "attempts")),
        send_retry_delay_ms=number("outbound", "retry_delay_ms"),
        send_timeout_seconds=number("outbound", "timeout_seconds", float),
        outbox_backoff_seconds=tuple(float(x) for x in backoff),
        outbox_max_age_seconds=max(1.0, number("outbound", "outbox_max_age_seconds", float)),
        read_receipts=bool(section["outbound"].get("read_receipts", False)),
        typing=bool(section["outbound"].get("typing", False)),
        reengagement_template=dict(template) if template else None,
        texts={key: " ".join(str(value).split()) for key, value in texts.items()},
        human_notices={key: " ".join(str(value).split()) for key, value in notices.items()},
    )


@lru_cache(maxsize=None)
def channel_config() -> ChannelConfig:
    return load_channel_config(load_settings().config_dir / "channels.yml")
