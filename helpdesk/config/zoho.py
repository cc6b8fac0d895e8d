"""`config/zoho.yml`: the numbers and texts of Zoho Desk delivery, checked on load.

Read by the Zoho client, the delivery jobs, the submit action and the status look-up. A broken
file raises `ConfigError` naming the file and the field.
"""
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from helpdesk.config.reader import AT_LEAST, number, read_yaml, require_key
from helpdesk.errors import ConfigError
from helpdesk.settings import load_settings

NOTICE_KINDS = (
    "ticket_rejected",
    "ticket_exhausted",
    "ticket_crashed",
    "ticket_config",
    "department_unconfigured",
    "zoho_auth",
    "addition_failed",
    "addition_file",
    "addition_comment",
)
DETAIL_FIELDS = (
    "reference",
    "store",
    "system",
    "reporter",
    "affected_person",
    "error_messages",
    "mentioned_users",
)


@dataclass(frozen=True)
class TicketShape:
    channel: str
    priorities: Dict[str, str]
    contact_last_name: str
    detail_labels: Dict[str, str]
    public_comments: bool
    public_attachments: bool


@dataclass(frozen=True)
class DeliveryPolicy:
    max_attempts: int
    retry_intervals: Tuple[float, ...]
    retry_jitter: float
    max_pending_seconds: float
    search_settle_seconds: float
    job_timeout: int
    connect_timeout: float
    read_timeout: float
    upload_timeout: float
    token_refresh_margin: float
    token_refresh_limit: int
    token_refresh_window: float
    rate_limited_backoff: Tuple[float, ...]
    quota_reset_timezone: str
    contact_cache_seconds: int
    unconfigured_retry_seconds: float = 300.0

    def retry_interval(self, attempt: int) -> float:
        """Wait after the `attempt`-th failed attempt (1-based); the last interval repeats."""
        return _nth(self.retry_intervals, attempt)


@dataclass(frozen=True)
class SubmitWait:
    wait_seconds: float
    poll_seconds: float


@dataclass(frozen=True)
class CircuitPolicy:
    failure_threshold: int
    recovery_seconds: float
    auth_recovery_seconds: float


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    retry_intervals: Tuple[float, ...]

    def retry_interval(self, attempt: int) -> float:
        return _nth(self.retry_intervals, attempt)


@dataclass(frozen=True)
class AdditionPolicy(RetryPolicy):
    wait_for_delivery_seconds: float
    max_wait_seconds: float


@dataclass(frozen=True)
class AnnouncePolicy(RetryPolicy):
    connect_timeout: float
    read_timeout: float


@dataclass(frozen=True)
class LookupPolicy:
    """The status question's call to Zoho while a user waits."""

    connect_timeout: float
    read_timeout: float


@dataclass(frozen=True)
class StatusPolling:
    interval_seconds: float
    batch_size: int
    max_age_days: float
    labels: Dict[str, str]

    def label(self, status: Optional[str], status_type: Optional[str] = None) -> str:
        """What the user reads for Zoho's status, in the status answer and the status-change
        announcement alike: its label here; a portal's own status without one as the portal
        names it ("Esperando repuesto" says more than its type's "en espera"); no status at
        all as its type's label."""
        if status:
            return self.labels.get(status, status)
        return self.labels.get(status_type or "", status_type or "")


@dataclass(frozen=True)
class ReconcilePolicy:
    interval_seconds: float
    grace_seconds: float
    announce_after_seconds: float


@dataclass(frozen=True)
class ZohoConfig:
    ticket: TicketShape
    delivery: DeliveryPolicy
    submit: SubmitWait
    circuit: CircuitPolicy
    additions: AdditionPolicy
    announcements: AnnouncePolicy
    lookup: LookupPolicy
    status_polling: StatusPolling
    reconcile: ReconcilePolicy
    human_notices: Dict[str, str]


def _nth(values: Tuple[float, ...], attempt: int) -> float:
    return float(values[min(max(attempt, 1), len(values)) - 1])


def _count(data: Dict[str, Any], key: str, where: str, minimum: int = 1) -> int:
    value = require_key(data, key, int, where)
    if value < minimum:
        raise ConfigError(f"{where}: '{key}' must be at least {minimum}, got {value}")
    return value


def _intervals(data: Dict[str, Any], key: str, where: str) -> Tuple[float, ...]:
    values = require_key(data, key, list, where)
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 for v in values):
        raise ConfigError(f"{where}: '{key}' must be a non-empty list of numbers >= 0, got {values!r}")
    return tuple(float(v) for v in values)


def _flag(data: Dict[str, Any], key: str, where: str) -> bool:
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: '{key}' must be true or false, got {value!r}")
    return value


def _texts(data: Dict[str, Any], key: str, where: str) -> Dict[str, str]:
    mapping = require_key(data, key, dict, where)
    for name, value in mapping.items():
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where}: '{key}.{name}' must be text")
    return {str(k): v for k, v in mapping.items()}


def load_zoho_config(path: Path) -> ZohoConfig:
    data = read_yaml(path)
    where = str(path)
    ticket = require_key(data, "ticket", dict, where)
    delivery = require_key(data, "delivery", dict, where)
    submit = require_key(data, "submit", dict, where)
    circuit = require_key(data, "circuit", dict, where)
    additions = require_key(data, "additions", dict, where)
    announcements = require_key(data, "announcements", dict, where)
    lookup = require_key(data, "lookup", dict, where)
    polling = require_key(data, "status_polling", dict, where)
    reconcile = require_key(data, "reconcile", dict, where)

    w = f"{where}: ticket"
    priorities = _texts(ticket, "priorities", w)
    for value in ("urgent", "normal"):
        if value not in priorities:
            raise ConfigError(f"{w}: 'priorities.{value}' is missing")
    labels = _texts(ticket, "detail_labels", w)
    unknown = set(labels) - set(DETAIL_FIELDS)
    if unknown:
        raise ConfigError(f"{w}: unknown detail_labels {sorted(unknown)} (known: {', '.join(DETAIL_FIELDS)})")
    shape = TicketShape(
        channel=require_key(ticket, "channel", str, w),
        priorities=priorities,
        contact_last_name=require_key(ticket, "contact_last_name", str, w),
        detail_labels=labels,
        public_comments=_flag(ticket, "public_comments", w),
        public_attachments=_flag(ticket, "public_attachments", w),
    )

    w = f"{where}: delivery"
    timezone_name = require_key(delivery, "quota_reset_timezone", str, w)
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(timezone_name)
    except Exception as error:  # ZoneInfoNotFoundError, ValueError
        raise ConfigError(f"{w}: 'quota_reset_timezone' {timezone_name!r} is not a time zone") from error
    policy = DeliveryPolicy(
        max_attempts=_count(delivery, "max_attempts", w),
        retry_intervals=_intervals(delivery, "retry_intervals", w),
        retry_jitter=number(delivery, "retry_jitter", w, style=AT_LEAST),
        max_pending_seconds=number(delivery, "max_pending_seconds", w, minimum=1, style=AT_LEAST),
        search_settle_seconds=number(delivery, "search_settle_seconds", w, style=AT_LEAST),
        job_timeout=_count(delivery, "job_timeout", w, 5),
        connect_timeout=number(delivery, "connect_timeout", w, minimum=0.1, style=AT_LEAST),
        read_timeout=number(delivery, "read_timeout", w, minimum=0.1, style=AT_LEAST),
        upload_timeout=number(delivery, "upload_timeout", w, minimum=0.1, style=AT_LEAST),
        token_refresh_margin=number(delivery, "token_refresh_margin", w, style=AT_LEAST),
        token_refresh_limit=_count(delivery, "token_refresh_limit", w),
        token_refresh_window=number(delivery, "token_refresh_window", w, minimum=1, style=AT_LEAST),
        rate_limited_backoff=_intervals(delivery, "rate_limited_backoff", w),
        quota_reset_timezone=timezone_name,
        contact_cache_seconds=_count(delivery, "contact_cache_seconds", w, 0),
        unconfigured_retry_seconds=number(delivery, "unconfigured_retry_seconds", w, minimum=1, style=AT_LEAST),
    )

    w = f"{where}: submit"
    wait = SubmitWait(
        wait_seconds=number(submit, "wait_seconds", w, style=AT_LEAST),
        poll_seconds=number(submit, "poll_seconds", w, minimum=0.01, style=AT_LEAST),
    )
    w = f"{where}: circuit"
    breaker = CircuitPolicy(
        failure_threshold=_count(circuit, "failure_threshold", w),
        recovery_seconds=number(circuit, "recovery_seconds", w, minimum=0.1, style=AT_LEAST),
        auth_recovery_seconds=number(circuit, "auth_recovery_seconds", w, minimum=0.1, style=AT_LEAST),
    )
    w = f"{where}: additions"
    addition = AdditionPolicy(
        max_attempts=_count(additions, "max_attempts", w),
        retry_intervals=_intervals(additions, "retry_intervals", w),
        wait_for_delivery_seconds=number(additions, "wait_for_delivery_seconds", w, style=AT_LEAST),
        max_wait_seconds=number(additions, "max_wait_seconds", w, minimum=1, style=AT_LEAST),
    )
    w = f"{where}: announcements"
    announce = AnnouncePolicy(
        max_attempts=_count(announcements, "max_attempts", w),
        retry_intervals=_intervals(announcements, "retry_intervals", w),
        connect_timeout=number(announcements, "connect_timeout", w, minimum=0.1, style=AT_LEAST),
        read_timeout=number(announcements, "read_timeout", w, minimum=0.1, style=AT_LEAST),
    )
    w = f"{where}: lookup"
    status_lookup = LookupPolicy(
        connect_timeout=number(lookup, "connect_timeout", w, minimum=0.1, style=AT_LEAST),
        read_timeout=number(lookup, "read_timeout", w, minimum=0.1, style=AT_LEAST),
    )
    w = f"{where}: status_polling"
    status = StatusPolling(
        interval_seconds=number(polling, "interval_seconds", w, style=AT_LEAST),
        batch_size=_count(polling, "batch_size", w),
        max_age_days=number(polling, "max_age_days", w, style=AT_LEAST),
        labels=_texts(polling, "labels", w),
    )
    w = f"{where}: reconcile"
    rec = ReconcilePolicy(
        interval_seconds=number(reconcile, "interval_seconds", w, style=AT_LEAST),
        grace_seconds=number(reconcile, "grace_seconds", w, style=AT_LEAST),
        announce_after_seconds=number(reconcile, "announce_after_seconds", w, style=AT_LEAST),
    )
    notices = _texts(data, "human_notices", where)
    missing = [kind for kind in NOTICE_KINDS if kind not in notices]
    if missing:
        raise ConfigError(f"{where}: human_notices is missing {', '.join(missing)}")
    return ZohoConfig(
        ticket=shape,
        delivery=policy,
        submit=wait,
        circuit=breaker,
        additions=addition,
        announcements=announce,
        lookup=status_lookup,
        status_polling=status,
        reconcile=rec,
        human_notices=notices,
    )


@lru_cache(maxsize=None)
def zoho_config() -> ZohoConfig:
    """The process-wide Zoho configuration, from the configured `config/` directory."""
    return load_zoho_config(load_settings().config_dir / "zoho.yml")
