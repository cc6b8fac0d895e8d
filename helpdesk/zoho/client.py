"""The one Zoho Desk client: OAuth, contacts, tickets, comments, attachments.

Synchronous (`requests`): it runs in RQ worker processes. Every call has a timeout, carries
`Authorization: Zoho-oauthtoken …` and `orgId`, and turns Zoho's answers into the error
classes below, which tell the caller what to do:

| error | meaning | caller |
|---|---|---|
| ZohoTransient | 5xx, timeout, connection error, unreadable answer; `ambiguous` when a write may have happened | retry later; after an ambiguous create, search before creating again |
| ZohoRateLimited | 429 TOO_MANY_REQUESTS (concurrency), or the token refresh budget is spent | back off `retry_after` |
| ZohoQuotaExceeded | 429 THRESHOLD_EXCEEDED: the day's API credits are gone | stop until `retry_after` (quota reset) |
| ZohoAuthError | refresh refused (HTTP 200 with an `error` body), 401 after a fresh token, 403 | stop, tell a human; not the ticket's fault |
| ZohoPermanent | 400/404/405/413/415/422: Zoho rejects this request (`field_errors`) | do not retry |

The access token is shared by every worker through Redis with its expiry, and refreshed by
one process at a time under a Redis lock, within a budget (Zoho allows ten refreshes per ten
minutes per refresh token). A 401 refreshes once and replays the call once; never more.

Wire formats: ../shared/docs/zoho-chatwoot-apis.md, part A.
"""
import html
import logging
import mimetypes
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import redis
import requests

from helpdesk import redis_keys
from helpdesk.errors import ConfigError
from helpdesk.logs import mask_phone
from helpdesk.settings import ZohoSettings
from helpdesk.config import DeliveryPolicy, TicketShape

logger = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
TOKEN_PATH = "/oauth/v2/token"
# token endpoint errors that mean "these credentials will not work" (not a passing problem)
_REFUSED_GRANTS = {"invalid_code", "invalid_client", "invalid_client_secret", "invalid_grant",
                   "unauthorized_client", "invalid_redirect_uri"}


# --- errors --------------------------------------------------------------------------
class ZohoError(Exception):
    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        code: Optional[str] = None,
        retry_after: Optional[float] = None,
        field_errors: Optional[List[Dict[str, Any]]] = None,
        ambiguous: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.field_errors = field_errors or []
        self.ambiguous = ambiguous

    def describe(self) -> str:
        parts = [str(self)]
        if self.field_errors:
            parts.append(format_field_errors(self.field_errors))
        return "; ".join(parts)


class ZohoTransient(ZohoError):
    """Zoho is unreachable or failing; the same call may work later."""


class ZohoRateLimited(ZohoError):
    """Too many calls at once (429 TOO_MANY_REQUESTS) or too many token refreshes."""


class ZohoQuotaExceeded(ZohoError):
    """429 THRESHOLD_EXCEEDED: the portal's daily API credits are used up."""


class ZohoAuthError(ZohoError):
    """Zoho refuses the credentials or their scope; a person must fix the configuration."""


class ZohoPermanent(ZohoError):
    """Zoho rejects this request as it is (422 with field errors, 400, 404, 413, 415)."""


class ZohoNotFound(ZohoPermanent):
    """The ticket (or URL) does not exist."""


def format_field_errors(errors: List[Dict[str, Any]]) -> str:
    """'/departmentId: invalid, /contactId: missing' from Zoho's errors[]."""
    parts = []
    for error in errors:
        text = f"{error.get('fieldName', '?')}: {error.get('errorType', 'invalid')}"
        if error.get("errorMessage"):
            text += f" ({error['errorMessage']})"
        parts.append(text)
    return ", ".join(parts)


# --- results -------------------------------------------------------------------------
@dataclass(frozen=True)
class ZohoTicket:
    id: str
    number: str
    status: Optional[str]
    status_type: Optional[str]
    web_url: Optional[str]
    cf: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "ZohoTicket":
        if not data.get("id") or data.get("ticketNumber") in (None, ""):
            raise ZohoTransient("Zoho answered a ticket without id or ticketNumber")
        return cls(
            id=str(data["id"]),
            number=str(data["ticketNumber"]),
            status=data.get("status"),
            status_type=data.get("statusType"),
            web_url=data.get("webUrl"),
            cf=data.get("cf") or {},
        )


def zoho_phone(digits: str) -> str:
    """Numbers are stored in Zoho as E.164 ('+5491122334455') so the exact search finds them."""
    return "+" + "".join(ch for ch in digits if ch.isdigit())


def _retry_after(response: requests.Response) -> Optional[float]:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def _body(response: requests.Response) -> Dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {"data": data}


# --- the access token ------------------------------------------------------------------
class ZohoTokens:
    """The OAuth access token shared through Redis, refreshed single-flight within a budget."""

    def __init__(
        self,
        settings: ZohoSettings,
        client: redis.Redis,
        policy: DeliveryPolicy,
        session: Optional[requests.Session] = None,
    ) -> None:
        self.settings = settings
        self.redis = client
        self.policy = policy
        self.session = session or requests.Session()

    def _cached(self) -> Optional[Tuple[str, float]]:
        values = self.redis.hgetall(redis_keys.zoho_access_token())
        token, expires = values.get(b"token"), values.get(b"expires_at")
        if not token or not expires:
            return None
        return token.decode(), float(expires)

    def get(self) -> str:
        cached = self._cached()
        if cached and cached[1] - self.policy.token_refresh_margin > time.time():
            return cached[0]
        return self._refresh(stale=None)

    def replace(self, rejected: str) -> str:
        """A call was answered 401 with `rejected`: get a different token (refresh at most once)."""
        return self._refresh(stale=rejected)

    def _refresh(self, stale: Optional[str]) -> str:
        lock = self.redis.lock(
            redis_keys.zoho_token_lock(),
            timeout=self.policy.connect_timeout + self.policy.read_timeout + 10,
            blocking_timeout=self.policy.connect_timeout + self.policy.read_timeout + 5,
        )
        if not lock.acquire():
            raise ZohoTransient("another worker is refreshing the Zoho token and has not finished")
        try:
            cached = self._cached()
            now = time.time()
            if cached and cached[0] != stale and cached[1] - self.policy.token_refresh_margin > now:
                return cached[0]  # another process refreshed while we waited for the lock
            try:
                return self._grant()
            except (ZohoTransient, ZohoRateLimited):
                # a token that still works is better than none while refreshing fails
                if cached and cached[0] != stale and cached[1] > now + 5:
                    logger.warning("zoho token refresh failed; using the current token until it expires")
                    return cached[0]
                raise
        finally:
            try:
                lock.release()
            except redis.exceptions.LockError:
                pass

    def _spend_refresh(self) -> None:
        key = redis_keys.zoho_token_refreshes()
        now = time.time()
        window = self.policy.token_refresh_window
        self.redis.zremrangebyscore(key, 0, now - window)
        recent = self.redis.zrange(key, 0, -1, withscores=True)
        if len(recent) >= self.policy.token_refresh_limit:
            wait = recent[0][1] + window - now
            raise ZohoRateLimited(
                f"Zoho token refresh budget spent ({len(recent)} in {window:.0f} s)",
                retry_after=max(wait, 1.0),
                code="REFRESH_BUDGET",
            )
        with self.redis.pipeline() as pipe:
            pipe.zadd(key, {f"{now:.6f}": now})
            pipe.expire(key, int(window) + 1)
            pipe.execute()

    def _grant(self) -> str:
        self._spend_refresh()
        url = self.settings.accounts_url + TOKEN_PATH
        try:
            response = self.session.post(
                url,
                data={
                    "grant_type": "refresh_token",
                    "client_id": self.settings.client_id,
                    "client_secret": self.settings.client_secret,
                    "refresh_token": self.settings.refresh_token,
                },
                timeout=(self.policy.connect_timeout, self.policy.read_timeout),
            )
        except requests.RequestException as error:
            raise ZohoTransient(f"Zoho token refresh failed: {type(error).__name__}") from error
        body = _body(response)
        if response.status_code >= 500:
            raise ZohoTransient(f"Zoho token refresh answered {response.status_code}", status=response.status_code)
        if response.status_code == 429:
            raise ZohoRateLimited("Zoho token refresh answered 429", status=429,
                                  retry_after=_retry_after(response) or self.policy.token_refresh_window)
        error = body.get("error")
        if error or response.status_code != 200:
            text = str(error or f"HTTP {response.status_code}")
            description = str(body.get("error_description") or "")
            if "too many" in (text + description).lower() or text.lower() == "access denied":
                raise ZohoRateLimited(f"Zoho token refresh refused: {text}", code=text,
                                      retry_after=self.policy.token_refresh_window)
            kind = ZohoAuthError if (text in _REFUSED_GRANTS or response.status_code in (200, 400, 401)) else ZohoTransient
            raise kind(f"Zoho token refresh refused: {text}", status=response.status_code, code=text)
        token = body.get("access_token")
        if not token:
            raise ZohoTransient("Zoho token refresh answered without access_token")
        expires_in = float(body.get("expires_in") or 3600)
        key = redis_keys.zoho_access_token()
        with self.redis.pipeline() as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping={"token": token, "expires_at": repr(time.time() + expires_in)})
            pipe.expire(key, max(1, int(expires_in)))
            pipe.execute()
        logger.info("zoho access token refreshed", extra={"expires_in": expires_in})
        return str(token)


# --- the client --------------------------------------------------------------------------
class ZohoClient:
    def __init__(
        self,
        settings: ZohoSettings,
        client: redis.Redis,
        policy: DeliveryPolicy,
        session: Optional[requests.Session] = None,
    ) -> None:
        self.settings = settings
        self.redis = client
        self.policy = policy
        self.session = session or requests.Session()
        self.tokens = ZohoTokens(settings, client, policy, self.session)

    # transport ----------------------------------------------------------------------------
    def _url(self, path: str) -> str:
        return f"{self.settings.desk_url}{API_PREFIX}{path}"

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Optional[Dict[str, Any]] = None,
        json_body: Optional[Dict[str, Any]] = None,
        files: Optional[Dict[str, Any]] = None,
        read_timeout: Optional[float] = None,
    ) -> Optional[Dict[str, Any]]:
        """One Desk API call; the JSON answer, None for 204. Raises the errors above."""
        writes = method.upper() != "GET"
        token = self.tokens.get()
        for replayed in (False, True):
            if files:
                for handle in files.values():
                    handle[1].seek(0)
            try:
                response = self.session.request(
                    method,
                    self._url(path),
                    params=params,
                    json=json_body,
                    files=files,
                    headers={"Authorization": f"Zoho-oauthtoken {token}", "orgId": self.settings.org_id},
                    timeout=(self.policy.connect_timeout, read_timeout or self.policy.read_timeout),
                )
            except requests.ConnectTimeout as error:
                raise ZohoTransient(f"Zoho {method} {path}: connect timeout") from error
            except requests.Timeout as error:
                raise ZohoTransient(f"Zoho {method} {path}: no answer in time", ambiguous=writes) from error
            except requests.ConnectionError as error:
                # refused before sending: nothing happened; dropped after sending: maybe it did
                refused = "NewConnectionError" in repr(error) or "Connection refused" in repr(error)
                raise ZohoTransient(
                    f"Zoho {method} {path}: connection failed", ambiguous=writes and not refused
                ) from error
            except requests.RequestException as error:
                raise ZohoTransient(f"Zoho {method} {path}: {type(error).__name__}", ambiguous=writes) from error
            if response.status_code == 401 and not replayed:
                code = _body(response).get("errorCode")
                logger.info("zoho answered 401; refreshing the token once", extra={"code": code, "path": path})
                token = self.tokens.replace(token)
                continue
            return self._answer(method, path, response, writes)
        raise AssertionError("unreachable")

    def _answer(self, method: str, path: str, response: requests.Response, writes: bool) -> Optional[Dict[str, Any]]:
        status = response.status_code
        if status == 204:
            return None
        body = _body(response)
        code = body.get("errorCode")
        message = body.get("message") or ""
        what = f"Zoho {method} {path} answered {status}" + (f" {code}" if code else "")
        if 200 <= status < 300:
            if not body and response.content.strip():
                raise ZohoTransient(f"Zoho {method} {path}: answer is not JSON", status=status, ambiguous=writes)
            return body
        if status == 429:
            if code == "THRESHOLD_EXCEEDED":
                raise ZohoQuotaExceeded(what, status=status, code=code, retry_after=_retry_after(response))
            raise ZohoRateLimited(what, status=status, code=code or "TOO_MANY_REQUESTS",
                                  retry_after=_retry_after(response))
        if status in (401, 403):
            raise ZohoAuthError(f"{what}: {message}".rstrip(": "), status=status, code=code)
        if status >= 500:
            raise ZohoTransient(what, status=status, code=code, ambiguous=writes)
        if status == 404:
            raise ZohoNotFound(what, status=status, code=code)
        raise ZohoPermanent(f"{what}: {message}".rstrip(": "), status=status, code=code,
                            field_errors=body.get("errors") or [])

    # contacts -----------------------------------------------------------------------------
    def find_contact_by_phone(self, phone_digits: str) -> Optional[str]:
        """The contact whose mobile or phone is exactly this number, or None."""
        number = zoho_phone(phone_digits)
        for param in ("mobile", "phone"):
            answer = self.request("GET", "/contacts/search", params={param: number, "limit": 1})
            data = (answer or {}).get("data") or []
            if data:
                return str(data[0]["id"])
        return None

    def create_contact(self, phone_digits: Optional[str], last_name: str, first_name: Optional[str] = None) -> str:
        body: Dict[str, Any] = {"lastName": last_name[:80]}
        if first_name:
            body["firstName"] = first_name[:80]
        if phone_digits:
            body["mobile"] = zoho_phone(phone_digits)
        answer = self.request("POST", "/contacts", json_body=body) or {}
        if not answer.get("id"):
            raise ZohoTransient("Zoho created a contact without id", ambiguous=True)
        return str(answer["id"])

    def ensure_contact(self, phone_digits: str, name: Optional[str], last_name_template: str) -> str:
        """The reporter's contact id by phone: remembered, searched, or created."""
        key = redis_keys.zoho_contact("".join(ch for ch in phone_digits if ch.isdigit()))
        remembered = self.redis.get(key)
        if remembered:
            return remembered.decode()
        contact_id = self.find_contact_by_phone(phone_digits)
        if contact_id is None:
            first, last = _split_name(name) if name else (None, last_name_template.format(phone=zoho_phone(phone_digits)))
            contact_id = self.create_contact(phone_digits, last, first)
            logger.info("zoho contact created", extra={"phone": mask_phone(phone_digits)})
        if self.policy.contact_cache_seconds:
            self.redis.set(key, contact_id, ex=self.policy.contact_cache_seconds)
        return contact_id

    # tickets ------------------------------------------------------------------------------
    def create_ticket(self, payload: Dict[str, Any]) -> ZohoTicket:
        return ZohoTicket.from_json(self.request("POST", "/tickets", json_body=payload) or {})

    def find_ticket_by_ref(self, ref_field: str, value: str) -> Optional[ZohoTicket]:
        """The ticket whose custom field `ref_field` holds `value` (the ledger id), or None."""
        answer = self.request("GET", "/tickets/search", params={"customField1": f"{ref_field}:{value}", "limit": 1})
        for item in (answer or {}).get("data") or []:
            found = ZohoTicket.from_json(item)
            if not found.cf or str(found.cf.get(ref_field)) == value:
                return found
        return None

    def get_ticket(self, ticket_id: str) -> ZohoTicket:
        return ZohoTicket.from_json(self.request("GET", f"/tickets/{ticket_id}") or {})

    # comments and attachments -----------------------------------------------------------
    def add_comment(self, ticket_id: str, content: str, public: bool = False) -> str:
        answer = self.request(
            "POST",
            f"/tickets/{ticket_id}/comments",
            json_body={"content": content[:32000], "isPublic": public, "contentType": "plainText"},
        ) or {}
        if not answer.get("id"):
            raise ZohoTransient("Zoho added a comment without id", ambiguous=True)
        return str(answer["id"])

    def list_comments(self, ticket_id: str, limit: int = 100) -> List[Dict[str, Any]]:
        answer = self.request(
            "GET", f"/tickets/{ticket_id}/comments",
            params={"from": 0, "limit": limit, "sortBy": "-commentedTime"},
        )
        return list((answer or {}).get("data") or [])

    def upload_attachment(self, ticket_id: str, path: str, public: bool = False,
                          name: Optional[str] = None) -> Dict[str, Any]:
        filename = name or os.path.basename(path)
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        with open(path, "rb") as handle:
            answer = self.request(
                "POST",
                f"/tickets/{ticket_id}/attachments",
                params={"isPublic": "true" if public else "false"},
                files={"file": (filename, handle, content_type)},
                read_timeout=self.policy.upload_timeout,
            ) or {}
        if not answer.get("id"):
            raise ZohoTransient("Zoho stored an attachment without id", ambiguous=True)
        return answer

    def list_attachments(self, ticket_id: str) -> List[Dict[str, Any]]:
        answer = self.request("GET", f"/tickets/{ticket_id}/attachments", params={"from": 0, "limit": 100})
        return list((answer or {}).get("data") or [])


def _split_name(name: str) -> Tuple[Optional[str], str]:
    parts = name.split()
    if len(parts) < 2:
        return None, name.strip() or name
    return " ".join(parts[:-1]), parts[-1]


# --- the ticket as Zoho wants it -----------------------------------------------------------
def ticket_payload(
    record: Any,
    *,
    shape: TicketShape,
    department_id: str,
    contact_id: Optional[str],
    ref_field: str,
) -> Dict[str, Any]:
    """The create-ticket body for a ledger record (helpdesk.tickets.ledger.TicketRecord).

    The ledger id goes into the custom field `ref_field`: it is how a later run finds a
    ticket whose create answer was lost.
    """
    if not department_id:
        raise ConfigError(
            f"department '{record.department}' has no zoho_id in config/departments.yml"
        )
    if not ref_field:
        raise ConfigError("ZOHO_REF_FIELD is not set: tickets cannot be created without duplicates")
    details = _details(record, shape.detail_labels)
    description = html.escape(record.description).replace("\n", "<br>")
    if details:
        description += "<br><br>" + "<br>".join(details)
    payload: Dict[str, Any] = {
        "subject": record.subject[:255],
        "description": description[:65535],
        "departmentId": department_id,
        "priority": shape.priorities.get(record.priority, record.priority),
        "classification": record.classification,
        "channel": shape.channel,
        "cf": {ref_field: record.id},
    }
    if contact_id:
        payload["contactId"] = contact_id
    else:
        payload["contact"] = {"lastName": (record.reporter_name or record.conversation_id)[:80]}
    if record.reporter_phone:
        payload["phone"] = zoho_phone(record.reporter_phone)
    return payload


def _details(record: Any, labels: Dict[str, str]) -> List[str]:
    values = {
        "reference": record.reference,
        "store": record.store,
        "system": record.system,
        "reporter": " ".join(
            part for part in (record.reporter_name, zoho_phone(record.reporter_phone) if record.reporter_phone else None)
            if part
        ),
        "affected_person": record.affected_person,
        "error_messages": "; ".join(record.error_messages or []),
        "mentioned_users": ", ".join(record.mentioned_users or []),
    }
    lines = []
    for key, label in labels.items():
        value = values.get(key)
        if value:
            lines.append(f"{html.escape(label)}: {html.escape(str(value))}")
    return lines
