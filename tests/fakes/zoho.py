"""A fake Zoho (accounts token endpoint + Desk API) on 127.0.0.1, for tests and benchmarks.

It speaks the formats in ../shared/docs/zoho-chatwoot-apis.md part A: refresh-token grant
(errors as HTTP 200 with an `error` key), `Authorization: Zoho-oauthtoken` and `orgId` checked
on every Desk call (401 INVALID_OAUTH for an unknown or expired token), ids and numbers as
JSON strings, `{"data": [...]}` lists and 204 for empty searches, 422 INVALID_DATA with
`errors[]`, 429 TOO_MANY_REQUESTS / THRESHOLD_EXCEEDED, multipart uploads in a `file` part,
unknown query parameters refused with 422. It keeps state (contacts, tickets with their `cf`
values, comments, attachments), records every request, and injects failures:

    zoho.fail(3)                                  next 3 Desk calls: 503
    zoho.fail(1, status=500, method="POST", path="/tickets", after=True)   create, then 500
    zoho.delay(2.0, method="POST", path="/tickets", after=True)            create, then wait
    zoho.expire_tokens()                          issued tokens become invalid (401)
    zoho.refuse_refresh("invalid_code")           the token endpoint answers 200 {"error": ...}
    zoho.reject(1, [{"fieldName": "/departmentId", "errorType": "invalid"}])    422
    zoho.rate_limit(2, code="TOO_MANY_REQUESTS" | "THRESHOLD_EXCEEDED", retry_after=3)
    zoho.answer_empty(1, method="POST", path="/tickets")  act (create), then 200 with no body
    zoho.go_down() / zoho.come_up()               connection refused while down
    zoho.delete_contact(contact_id)               an agent deleted the contact
    zoho.merge_contacts(kept_id, merged_id)       an agent merged one contact into another
    zoho.set_status(ticket_id, "On Hold", "On Hold")

The portal's departments (`GET /departments`, `{"data": [...]}` with id, name, isEnabled, ...)
are the ids given, named `department_names[id]` or "Department <n>"; the ticket fields
(`GET /organizationFields?module=tickets`) are a few standard ones plus each of `ref_fields` as
a custom text field.
"""
import email.parser
import email.policy
import itertools
import json
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlparse

from helpdesk.launch import free_port

ORG_ID = "20081234567"
CLIENT_ID = "1000.FAKECLIENTID"
CLIENT_SECRET = "fake-client-secret"
REFRESH_TOKEN = "1000.fake.refresh"
REF_FIELD = "cf_helpdesk_ref"

CONTACT_SEARCH_PARAMS = {"from", "limit", "id", "email", "phone", "mobile", "firstName", "lastName",
                         "fullName", "accountName", "_all", "sortBy"}
DEPARTMENT_LIST_PARAMS = {"from", "limit", "isEnabled", "chatStatus", "searchStr"}
FIELD_LIST_PARAMS = {"module", "apiNames"}
STANDARD_TICKET_FIELDS = (("subject", "Subject", "Text"), ("departmentId", "Department", "LookUp"),
                          ("contactId", "Contact Name", "LookUp"), ("status", "Status", "Picklist"),
                          ("priority", "Priority", "Picklist"), ("channel", "Channel", "Picklist"),
                          ("description", "Description", "Textarea"))
TICKET_SEARCH_PARAMS = {"from", "limit", "id", "ticketNumber", "subject", "status", "departmentId", "email",
                        "phone", "_all", "sortBy", "createdTimeRange", "customField1", "customField2"}


@dataclass
class Recorded:
    method: str
    path: str  # without /api/v1
    query: Dict[str, List[str]]
    headers: Dict[str, str]
    json: Any
    status: int = 0
    at: float = field(default_factory=time.time)


@dataclass
class Rule:
    kind: str  # fail | delay | reject | rate | refresh_error | empty
    times: Optional[int]
    method: Optional[str] = None
    path: Optional[str] = None  # prefix of the path after /api/v1, or "/oauth" for the token endpoint
    status: int = 503
    code: str = "INTERNAL_SERVER_ERROR"
    after: bool = False  # act first (create the ticket), then fail or wait
    seconds: float = 0.0
    errors: List[Dict[str, Any]] = field(default_factory=list)
    retry_after: Optional[float] = None

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.method and self.method != method:
            return False
        if self.path == "/oauth":
            return path.startswith("/oauth")
        if path.startswith("/oauth"):
            return False
        return not self.path or path.startswith(self.path)


def _now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


class FakeZoho:
    def __init__(self, *, departments: Tuple[str, ...] = (), token_lifetime: int = 3600,
                 search_lag: float = 0.0, ref_fields: Tuple[str, ...] = (REF_FIELD,),
                 first_number: int = 1001, department_names: Optional[Dict[str, str]] = None) -> None:
        self.port = free_port()
        self.departments = set(departments)  # empty: any department id is accepted
        self.department_names = dict(department_names or {})
        self._department_order = list(departments)
        self.token_lifetime = token_lifetime
        self.search_lag = search_lag
        self.ref_fields = set(ref_fields)
        self.lock = threading.RLock()
        self.valid_tokens: Dict[str, float] = {}
        self.refreshes = 0
        self.contacts: Dict[str, Dict[str, Any]] = {}
        self.tickets: Dict[str, Dict[str, Any]] = {}
        self.comments: Dict[str, List[Dict[str, Any]]] = {}
        self.attachments: Dict[str, List[Dict[str, Any]]] = {}
        self.attachment_bytes: Dict[str, bytes] = {}
        self.requests: List[Recorded] = []
        self.rules: List[Rule] = []
        self._ids = itertools.count(1892000000042001)
        self._numbers = itertools.count(first_number)  # ticketNumber of the next ticket created
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._in_flight = 0
        self.max_in_flight = 0
        self._sockets: set = set()

    # lifecycle ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "FakeZoho":
        handler = _handler_for(self)
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-zoho",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self.lock:
            sockets, self._sockets = list(self._sockets), set()
        for connection in sockets:  # kept-alive client connections end too
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def go_down(self) -> None:
        """Nothing listens on the port: connections are refused."""
        self.stop()

    def come_up(self) -> None:
        if self._server is None:
            self.start()

    def env(self) -> Dict[str, str]:
        """The ZOHO_* variables that point the bot at this fake."""
        return {
            "ZOHO_ACCOUNTS_URL": self.url,
            "ZOHO_DESK_URL": self.url,
            "ZOHO_CLIENT_ID": CLIENT_ID,
            "ZOHO_CLIENT_SECRET": CLIENT_SECRET,
            "ZOHO_REFRESH_TOKEN": REFRESH_TOKEN,
            "ZOHO_ORG_ID": ORG_ID,
            "ZOHO_REF_FIELD": REF_FIELD,
        }

    # failure injection ----------------------------------------------------------------------
    def _add(self, rule: Rule) -> Rule:
        with self.lock:
            self.rules.append(rule)
        return rule

    def fail(self, times: Optional[int], status: int = 503, *, method: Optional[str] = None,
             path: Optional[str] = None, after: bool = False, code: Optional[str] = None) -> Rule:
        code = code or ("INTERNAL_SERVER_ERROR" if status >= 500 else "UNPROCESSABLE_ENTITY")
        return self._add(Rule("fail", times, method, path, status=status, code=code, after=after))

    def delay(self, seconds: float, *, times: Optional[int] = None, method: Optional[str] = None,
              path: Optional[str] = None, after: bool = False) -> Rule:
        return self._add(Rule("delay", times, method, path, seconds=seconds, after=after))

    def reject(self, times: Optional[int], errors: List[Dict[str, Any]], *, method: str = "POST",
               path: str = "/tickets") -> Rule:
        return self._add(Rule("reject", times, method, path, status=422, code="INVALID_DATA", errors=errors))

    def rate_limit(self, times: Optional[int], code: str = "TOO_MANY_REQUESTS", retry_after: Optional[float] = None,
                   *, method: Optional[str] = None, path: Optional[str] = None) -> Rule:
        return self._add(Rule("rate", times, method, path, status=429, code=code, retry_after=retry_after))

    def answer_empty(self, times: Optional[int], status: int = 200, *, method: Optional[str] = None,
                     path: Optional[str] = None) -> Rule:
        """Do what the call asks (create the ticket), then answer `status` with an empty body."""
        return self._add(Rule("empty", times, method, path, status=status, after=True))

    def refuse_refresh(self, error: str = "invalid_code", times: Optional[int] = None) -> Rule:
        return self._add(Rule("refresh_error", times, "POST", "/oauth", code=error))

    def clear_failures(self) -> None:
        with self.lock:
            self.rules.clear()

    def expire_tokens(self) -> None:
        with self.lock:
            self.valid_tokens.clear()

    def delete_contact(self, contact_id: str) -> None:
        """An agent deleted the contact: tickets naming its id are refused (422 /contactId invalid)."""
        with self.lock:
            del self.contacts[contact_id]

    def merge_contacts(self, kept_id: str, merged_id: str) -> None:
        """An agent merged `merged_id` into `kept_id`: the merged contact is gone, its tickets and
        any phone the kept one lacks move to the kept one."""
        with self.lock:
            merged, kept = self.contacts.pop(merged_id), self.contacts[kept_id]
            for name in ("mobile", "phone", "email"):
                if not kept.get(name) and merged.get(name):
                    kept[name] = merged[name]
            for ticket in self.tickets.values():
                if ticket.get("contactId") == merged_id:
                    ticket["contactId"] = kept_id

    def number_from(self, number: int) -> None:
        """The next ticket created gets this ticketNumber (then the following ones)."""
        with self.lock:
            self._numbers = itertools.count(number)

    def set_status(self, ticket_id: str, status: str, status_type: Optional[str] = None) -> None:
        with self.lock:
            ticket = self.tickets[ticket_id]
            ticket["status"] = status
            ticket["statusType"] = status_type or ("Closed" if status == "Closed" else "Open")
            ticket["modifiedTime"] = _now_iso()

    # queries for tests ------------------------------------------------------------------
    def calls(self, method: Optional[str] = None, path: Optional[str] = None) -> List[Recorded]:
        with self.lock:
            return [r for r in self.requests
                    if (method is None or r.method == method) and (path is None or r.path == path)]

    def tickets_with_ref(self, value: str) -> List[Dict[str, Any]]:
        with self.lock:
            return [t for t in self.tickets.values() if (t.get("cf") or {}).get(REF_FIELD) == value]

    # request handling --------------------------------------------------------------------
    def _matching(self, kind: str, method: str, path: str, after: Optional[bool] = None) -> Optional[Rule]:
        with self.lock:
            for rule in self.rules:
                if rule.kind == kind and rule.matches(method, path) and (after is None or rule.after == after):
                    if rule.times is not None:
                        rule.times -= 1
                    return rule
        return None

    def handle(self, method: str, raw_path: str, headers: Dict[str, str], body: bytes) -> Tuple[int, Dict[str, str], Any]:
        parsed = urlparse(raw_path)
        query = parse_qs(parsed.query, keep_blank_values=True)
        path = parsed.path
        api = path.startswith("/api/v1")
        short = path[len("/api/v1"):] if api else path
        data: Any = None
        content_type = headers.get("content-type", "")
        if body and content_type.startswith("application/json"):
            try:
                data = json.loads(body)
            except ValueError:
                return 400, {}, {"errorCode": "INVALID_DATA", "message": "The JSON body is not valid."}
        record = Recorded(method, short, query, dict(headers), data)
        with self.lock:
            self.requests.append(record)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            status, extra_headers, answer = self._dispatch(method, short, query, headers, body, data, api)
        finally:
            with self.lock:
                self._in_flight -= 1
        record.status = status
        return status, extra_headers, answer

    def _dispatch(self, method, short, query, headers, body, data, api):
        delay = self._matching("delay", method, short, after=False)
        if delay:
            time.sleep(delay.seconds)
        if short == "/oauth/v2/token" and method == "POST":
            return self._token(query, headers, body)
        if not api:
            return 404, {}, {"errorCode": "URL_NOT_FOUND", "message": "The URL you requested could not be found."}
        auth = headers.get("authorization", "")
        token = auth[len("Zoho-oauthtoken "):] if auth.startswith("Zoho-oauthtoken ") else None
        with self.lock:
            expires = self.valid_tokens.get(token or "")
        if not token or not expires or expires < time.time():
            return 401, {}, {"errorCode": "INVALID_OAUTH", "message": "The OAuth Token you provided is invalid."}
        if headers.get("orgid") != ORG_ID:
            return 422, {}, {"errorCode": "UNPROCESSABLE_ENTITY",
                             "message": "The value passed for the 'orgId' parameter is invalid."}
        rate = self._matching("rate", method, short)
        if rate:
            extra = {"Retry-After": str(int(rate.retry_after))} if rate.retry_after is not None else {}
            return 429, extra, {"errorCode": rate.code, "message": "Too many requests."}
        failing = self._matching("fail", method, short, after=False)
        if failing:
            return failing.status, {}, {"errorCode": failing.code, "message": "Injected failure."}
        reject = self._matching("reject", method, short)
        if reject:
            return 422, {}, {"errorCode": "INVALID_DATA",
                             "message": "The data does not comply to the validation restrictions defined.",
                             "errors": reject.errors}
        status, extra, answer = self._route(method, short, query, headers, body, data)
        slow = self._matching("delay", method, short, after=True)
        if slow:
            time.sleep(slow.seconds)
        failing = self._matching("fail", method, short, after=True)
        if failing:
            return failing.status, {}, {"errorCode": failing.code, "message": "Injected failure after the change."}
        empty = self._matching("empty", method, short, after=True)
        if empty:
            return empty.status, {}, None
        return status, extra, answer

    def _token(self, query, headers, body):
        params = {k: v[0] for k, v in query.items()}
        if body and headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            params.update({k: v[0] for k, v in parse_qs(body.decode()).items()})
        refused = self._matching("refresh_error", "POST", "/oauth/v2/token")
        if refused:
            return 200, {}, {"error": refused.code}
        if params.get("grant_type") != "refresh_token":
            return 200, {}, {"error": "unsupported_grant_type"}
        if params.get("client_id") != CLIENT_ID or params.get("client_secret") != CLIENT_SECRET:
            return 200, {}, {"error": "invalid_client"}
        if params.get("refresh_token") != REFRESH_TOKEN:
            return 200, {}, {"error": "invalid_code"}
        token = f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
        with self.lock:
            self.refreshes += 1
            self.valid_tokens[token] = time.time() + self.token_lifetime
        return 200, {}, {"access_token": token, "api_domain": "https://www.zohoapis.com",
                         "token_type": "Bearer", "expires_in": self.token_lifetime}

    def _route(self, method, short, query, headers, body, data):
        parts = [p for p in short.split("/") if p]
        if parts == ["departments"] and method == "GET":
            return self._list_departments(query)
        if parts == ["organizationFields"] and method == "GET":
            return self._list_fields(query)
        if parts == ["contacts", "search"] and method == "GET":
            return self._search_contacts(query)
        if parts == ["contacts"] and method == "POST":
            return self._create_contact(data or {})
        if parts == ["tickets"] and method == "POST":
            return self._create_ticket(data or {})
        if parts == ["tickets", "search"] and method == "GET":
            return self._search_tickets(query)
        if len(parts) == 2 and parts[0] == "tickets" and method == "GET":
            ticket = self.tickets.get(parts[1])
            return (200, {}, dict(ticket)) if ticket else self._not_found()
        if len(parts) == 3 and parts[0] == "tickets" and parts[2] == "comments":
            if parts[1] not in self.tickets:
                return self._not_found()
            return self._comments(method, parts[1], data or {})
        if len(parts) == 3 and parts[0] == "tickets" and parts[2] == "attachments":
            if parts[1] not in self.tickets:
                return self._not_found()
            return self._attachments(method, parts[1], query, headers, body)
        return self._not_found()

    @staticmethod
    def _not_found():
        return 404, {}, {"errorCode": "URL_NOT_FOUND", "message": "The URL you requested could not be found."}

    @staticmethod
    def _invalid(errors):
        return 422, {}, {"errorCode": "INVALID_DATA",
                         "message": "The data does not comply to the validation restrictions defined.",
                         "errors": errors}

    @staticmethod
    def _unknown_params(query, allowed):
        extra = sorted(set(query) - allowed)
        if extra:
            return 422, {}, {"errorCode": "UNPROCESSABLE_ENTITY",
                             "message": f"Extra query parameter '{extra[0]}' is present in the input."}
        return None

    def _list_departments(self, query):
        refused = self._unknown_params(query, DEPARTMENT_LIST_PARAMS)
        if refused:
            return refused
        start = int(query.get("from", ["0"])[0])
        limit = int(query.get("limit", ["10"])[0])
        if limit > 200:
            return 422, {}, {"errorCode": "UNPROCESSABLE_ENTITY",
                             "message": "The value passed for the 'limit' query parameter is invalid."}
        items = []
        for index, department_id in enumerate(self._department_order):
            name = self.department_names.get(department_id, f"Department {index + 1}")
            items.append({"id": department_id, "name": name, "nameInCustomerPortal": name,
                          "description": None, "isEnabled": True, "isDefault": index == 0,
                          "isAssignToTeamEnabled": False, "isVisibleInCustomerPortal": True,
                          "hasLogo": False, "chatStatus": "AVAILABLE", "creatorId": "4000000008692",
                          "createdTime": "2024-01-10T09:00:00.000Z",
                          "sanitizedName": name.lower().replace(" ", "-")})
        page = items[start:start + limit]
        return (200, {}, {"data": page}) if page else (204, {}, None)

    def _list_fields(self, query):
        refused = self._unknown_params(query, FIELD_LIST_PARAMS)
        if refused:
            return refused
        if query.get("module", [""])[0] != "tickets":
            return 422, {}, {"errorCode": "UNPROCESSABLE_ENTITY",
                             "message": "The value passed for the 'module' query parameter is invalid."}
        fields = [{"id": str(1892000000000100 + n), "apiName": api, "displayLabel": label, "name": api,
                   "type": kind, "isCustomField": False, "isMandatory": api in ("subject", "departmentId"),
                   "maxLength": 255, "isEncryptedField": False, "showToHelpCenter": True}
                  for n, (api, label, kind) in enumerate(STANDARD_TICKET_FIELDS)]
        for n, api in enumerate(sorted(self.ref_fields)):
            fields.append({"id": str(1892000000000200 + n), "apiName": api, "displayLabel": api[3:],
                           "name": api, "type": "Text", "isCustomField": True, "isMandatory": False,
                           "maxLength": 255, "isEncryptedField": False, "showToHelpCenter": False})
        wanted = query.get("apiNames", [""])[0]
        if wanted:
            names = set(wanted.split(","))
            fields = [f for f in fields if f["apiName"] in names]
        return 200, {}, {"data": fields}

    def _search_contacts(self, query):
        refused = self._unknown_params(query, CONTACT_SEARCH_PARAMS)
        if refused:
            return refused
        with self.lock:
            found = [c for c in self.contacts.values()
                     if all(c.get(key) == values[0] for key, values in query.items()
                            if key in ("phone", "mobile", "email", "lastName", "id"))]
        if not found:
            return 204, {}, None
        limit = int(query.get("limit", ["10"])[0])
        return 200, {}, {"data": found[:limit]}

    def _create_contact(self, data):
        if not data.get("lastName"):
            return self._invalid([{"fieldName": "/lastName", "errorType": "missing"}])
        contact_id = str(next(self._ids))
        contact = {"id": contact_id, "lastName": data["lastName"], "firstName": data.get("firstName"),
                   "email": data.get("email"), "mobile": data.get("mobile"), "phone": data.get("phone"),
                   "accountId": None, "createdTime": _now_iso(), "cf": data.get("cf") or {},
                   "webUrl": f"{self.url}/support/fake/ShowHomePage.do#Contacts/dv/{contact_id}"}
        with self.lock:
            self.contacts[contact_id] = contact
        return 200, {}, contact

    def _create_ticket(self, data):
        errors = []
        for name in ("subject", "departmentId"):
            if not data.get(name):
                errors.append({"fieldName": f"/{name}", "errorType": "missing"})
        if data.get("departmentId") and self.departments and str(data["departmentId"]) not in self.departments:
            errors.append({"fieldName": "/departmentId", "errorType": "invalid"})
        if data.get("contactId"):
            if str(data["contactId"]) not in self.contacts:
                errors.append({"fieldName": "/contactId", "errorType": "invalid"})
        elif not (data.get("contact") or {}).get("lastName") and not (data.get("contact") or {}).get("email"):
            errors.append({"fieldName": "/contactId", "errorType": "missing"})
        for key in (data.get("cf") or {}):
            if key not in self.ref_fields:
                errors.append({"fieldName": f"/cf/{key}", "errorType": "invalid"})
        if errors:
            return self._invalid(errors)
        contact_id = str(data.get("contactId") or "")
        if not contact_id:
            created = self._create_contact(data["contact"])[2]
            contact_id = created["id"]
        ticket_id = str(next(self._ids))
        now = _now_iso()
        ticket = {
            "id": ticket_id, "ticketNumber": str(next(self._numbers)), "subject": data["subject"],
            "status": "Open", "statusType": "Open", "priority": data.get("priority"),
            "channel": data.get("channel") or "Phone", "classification": data.get("classification"),
            "departmentId": str(data["departmentId"]), "contactId": contact_id, "assigneeId": None,
            "email": data.get("email"), "phone": data.get("phone"), "description": data.get("description"),
            "createdTime": now, "modifiedTime": now, "cf": dict(data.get("cf") or {}), "customFields": {},
            "webUrl": f"{self.url}/support/fake/ShowHomePage.do#Cases/dv/{ticket_id}",
            "threadCount": "1", "commentCount": "0", "attachmentCount": "0", "isSpam": False,
            "_created_at": time.time(),
        }
        with self.lock:
            self.tickets[ticket_id] = ticket
        return 200, {}, {k: v for k, v in ticket.items() if not k.startswith("_")}

    def _search_tickets(self, query):
        refused = self._unknown_params(query, TICKET_SEARCH_PARAMS)
        if refused:
            return refused
        visible_before = time.time() - self.search_lag
        with self.lock:
            found = list(self.tickets.values())
        for key in ("customField1", "customField2"):
            if key in query:
                name, _, value = query[key][0].partition(":")
                found = [t for t in found if str((t.get("cf") or {}).get(name)) == value]
        if "ticketNumber" in query:
            found = [t for t in found if t["ticketNumber"] == query["ticketNumber"][0]]
        found = [t for t in found if t["_created_at"] <= visible_before]
        if not found:
            return 204, {}, None
        limit = int(query.get("limit", ["10"])[0])
        return 200, {}, {"data": [{k: v for k, v in t.items() if not k.startswith("_")} for t in found[:limit]]}

    def _comments(self, method, ticket_id, data):
        if method == "GET":
            with self.lock:
                items = list(reversed(self.comments.get(ticket_id, [])))
            return (200, {}, {"data": items}) if items else (204, {}, None)
        if method != "POST":
            return 405, {}, {"errorCode": "METHOD_NOT_ALLOWED", "message": "Method not allowed."}
        if not data.get("content"):
            return self._invalid([{"fieldName": "/content", "errorType": "missing"}])
        comment = {"id": str(next(self._ids)), "content": data["content"],
                   "contentType": data.get("contentType", "html"), "isPublic": bool(data.get("isPublic", False)),
                   "commentedTime": _now_iso(), "modifiedTime": None, "commenterId": "4000000008692",
                   "commenter": {"firstName": "Bot", "lastName": "Integration", "type": "AGENT"},
                   "attachments": []}
        with self.lock:
            self.comments.setdefault(ticket_id, []).append(comment)
            self.tickets[ticket_id]["commentCount"] = str(len(self.comments[ticket_id]))
        return 200, {}, comment

    def _attachments(self, method, ticket_id, query, headers, body):
        if method == "GET":
            with self.lock:
                items = list(self.attachments.get(ticket_id, []))
            return (200, {}, {"data": items}) if items else (204, {}, None)
        if method != "POST":
            return 405, {}, {"errorCode": "METHOD_NOT_ALLOWED", "message": "Method not allowed."}
        content_type = headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            return 415, {}, {"errorCode": "UNSUPPORTED_MEDIA_TYPE", "message": "Unsupported media type."}
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body
        )
        part = next((p for p in message.iter_parts()
                     if p.get_param("name", header="content-disposition") == "file"), None)
        if part is None or not part.get_filename():
            return self._invalid([{"fieldName": "/file", "errorType": "missing"}])
        content = part.get_payload(decode=True) or b""
        attachment_id = str(next(self._ids))
        attachment = {"id": attachment_id, "name": part.get_filename(), "size": str(len(content)),
                      "creatorId": "4000000008692", "createdTime": _now_iso(),
                      "isPublic": query.get("isPublic", ["false"])[0] == "true",
                      "href": f"{self.url}/api/v1/tickets/{ticket_id}/attachments/{attachment_id}/content",
                      "previewurl": None, "_content_type": part.get_content_type()}
        with self.lock:
            self.attachments.setdefault(ticket_id, []).append(attachment)
            self.attachment_bytes[attachment_id] = content
            self.tickets[ticket_id]["attachmentCount"] = str(len(self.attachments[ticket_id]))
        return 200, {}, {k: v for k, v in attachment.items() if not k.startswith("_")}


def _handler_for(fake: FakeZoho) -> Callable[..., BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with fake.lock:
                fake._sockets.add(self.connection)

        def finish(self) -> None:
            with fake.lock:
                fake._sockets.discard(self.connection)
            super().finish()

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                status, extra, answer = fake.handle(self.command, self.path, headers, body)
            except Exception as error:  # a bug in the fake must show, not hang the client
                status, extra, answer = 500, {}, {"errorCode": "INTERNAL_SERVER_ERROR", "message": repr(error)}
            data = b"" if answer is None else json.dumps(answer).encode()
            try:
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                if answer is not None:
                    self.send_header("Content-Type", "application/json;charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout, killed worker)

        do_GET = do_POST = do_PATCH = do_DELETE = _serve

        def log_message(self, *args: Any) -> None:
            return

    return Handler
