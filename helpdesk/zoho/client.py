"""The one Zoho Desk client: contacts, tickets, comments, attachments (OAuth tokens in
tokens.py, errors in errors.py, the ticket body in payload.py).

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
import logging
import mimetypes
import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import redis
import requests

from helpdesk import redis_keys
from helpdesk.config import DeliveryPolicy
from helpdesk.logs import mask_phone
from helpdesk.metrics import ZOHO_API_LATENCY
from helpdesk.settings import ZohoSettings
from helpdesk.text import only_digits
from helpdesk.zoho.errors import (ZohoAuthError, ZohoNotFound, ZohoPermanent,
                                  ZohoQuotaExceeded, ZohoRateLimited, ZohoTransient, answer_json,
                                  retry_after_of)
from helpdesk.zoho.payload import zoho_phone
from helpdesk.zoho.tokens import ZohoTokens

logger = logging.getLogger(__name__)


API_PREFIX = "/api/v1"


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
            started = time.monotonic()
            status = "error"  # no answer: timeout, connection failed
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
                status = f"{response.status_code // 100}xx"
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
            finally:
                ZOHO_API_LATENCY.observe(self.redis, time.monotonic() - started,
                                         operation=operation_of(method, path), status=status)
            if response.status_code == 401 and not replayed:
                code = answer_json(response).get("errorCode")
                logger.info("zoho answered 401; refreshing the token once", extra={"code": code, "path": path})
                token = self.tokens.replace(token)
                continue
            return self._answer(method, path, response, writes)
        raise AssertionError("unreachable")

    def _answer(self, method: str, path: str, response: requests.Response, writes: bool) -> Optional[Dict[str, Any]]:
        status = response.status_code
        if status == 204:
            return None
        body = answer_json(response)
        code = body.get("errorCode")
        message = body.get("message") or ""
        what = f"Zoho {method} {path} answered {status}" + (f" {code}" if code else "")
        if 200 <= status < 300:
            if not body and response.content.strip():
                raise ZohoTransient(f"Zoho {method} {path}: answer is not JSON", status=status, ambiguous=writes)
            return body
        if status == 429:
            if code == "THRESHOLD_EXCEEDED":
                raise ZohoQuotaExceeded(what, status=status, code=code, retry_after=retry_after_of(response))
            raise ZohoRateLimited(what, status=status, code=code or "TOO_MANY_REQUESTS",
                                  retry_after=retry_after_of(response))
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
        key = redis_keys.zoho_contact(only_digits(phone_digits))  # one key per number, any script
        remembered = self.redis.get(key)
        if remembered:
            return remembered.decode()
        return self.resolve_contact(phone_digits, name, last_name_template)

    def forget_contact(self, phone_digits: str, contact_id: Optional[str] = None) -> None:
        """Forget the remembered contact of this number (an agent deleted or merged it); only
        `contact_id` when given, so a newer one another worker just stored stays."""
        key = redis_keys.zoho_contact(only_digits(phone_digits))
        if contact_id is None:
            self.redis.delete(key)
            return
        with self.redis.pipeline() as pipe:
            try:
                pipe.watch(key)
                if (pipe.get(key) or b"").decode() == contact_id:
                    pipe.multi()
                    pipe.delete(key)
                    pipe.execute()
            except redis.WatchError:
                pass  # someone stored another id meanwhile: that one is newer

    def resolve_contact(self, phone_digits: str, name: Optional[str], last_name_template: str) -> str:
        """The reporter's contact id searched in Zoho by phone, or created; then remembered."""
        key = redis_keys.zoho_contact(only_digits(phone_digits))
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
        answer = self.request("POST", "/tickets", json_body=payload)
        try:
            return ZohoTicket.from_json(answer or {})
        except ZohoTransient as error:
            # a 2xx is Zoho saying it created it: created, id unknown; search before any new create
            raise ZohoTransient("Zoho answered the create with a 2xx but no id or ticketNumber",
                                ambiguous=True) from error

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

    # the portal's set-up (helpdesk/zoho/check.py) -------------------------------------------
    def list_departments(self) -> List[Dict[str, Any]]:
        """Every department of the portal (`GET /departments`, pages of 200; scope
        Desk.basic.READ): dicts with at least `id`, `name`, `isEnabled`."""
        found: List[Dict[str, Any]] = []
        page = 200
        while True:
            answer = self.request("GET", "/departments", params={"from": len(found), "limit": page})
            data = list((answer or {}).get("data") or [])
            found.extend(data)
            if len(data) < page:
                return found

    def list_ticket_fields(self) -> List[Dict[str, Any]]:
        """The ticket module's fields (`GET /organizationFields?module=tickets`): dicts with
        `apiName`, `displayLabel`, `isCustomField`, `type`."""
        answer = self.request("GET", "/organizationFields", params={"module": "tickets"})
        return list((answer or {}).get("data") or [])


def operation_of(method: str, path: str) -> str:
    """The `operation` label of a call: its method and path with ids as `{id}`
    ("GET /tickets/{id}/comments"), so the label's values stay few."""
    parts = ["{id}" if part.isdigit() else part for part in path.split("/")]
    return f"{method.upper()} {'/'.join(parts)}"


def _split_name(name: str) -> Tuple[Optional[str], str]:
    parts = name.split()
    if len(parts) < 2:
        return None, name.strip() or name
    return " ".join(parts[:-1]), parts[-1]

