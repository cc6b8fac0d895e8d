"""The one Chatwoot client: every URL of Chatwoot's Application API is built here.

Blocking (`requests`), for RQ workers. Every call has a connect and a read timeout; the
token travels in the `api_access_token` header. Failures come out as one of the error
classes below, so callers decide by kind, never by parsing messages:

- `ChatwootUnavailable`: timeout, connection failure, 429 or 5xx. Worth retrying. `ambiguous`
  says the request may have been carried out (a write must be checked before it is re-sent).
- `ChatwootAuthError`: 401/403. The token or account is wrong; retrying will not help until
  an operator fixes the settings.
- `ChatwootNotFound`: 404 (a conversation deleted in Chatwoot, a wrong id).
- `ChatwootRejected`: 400/422 and other 4xx. This request will never succeed as it is.

Wire formats: /work/shared/docs/zoho-chatwoot-apis.md, part B. Labels and custom attributes
replace the whole set in Chatwoot: `add_labels` and `merge_custom_attributes` read, merge and
write, so what agents set is never clobbered.
"""
import logging
import re
from typing import Any, Dict, Iterable, List, Optional, Sequence

import requests

from helpdesk.config import ChatwootConfig
from helpdesk.settings import ChatwootSettings
from helpdesk.text import only_digits

logger = logging.getLogger(__name__)

SEARCH_PAGE_SIZE = 15  # Chatwoot's contacts page
MESSAGE_TYPES = {"incoming": 0, "outgoing": 1, "activity": 2, "template": 3}
_E164 = re.compile(r"^\+[1-9]\d{1,14}$")


class ChatwootError(Exception):
    """Base of every Chatwoot failure; `status` and `body` are the response's, when any."""

    retryable = False

    def __init__(self, message: str, *, status: Optional[int] = None, body: Any = None,
                 ambiguous: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.body = body
        self.ambiguous = ambiguous


class ChatwootUnavailable(ChatwootError):
    retryable = True


class ChatwootAuthError(ChatwootError):
    pass


class ChatwootNotFound(ChatwootError):
    pass


class ChatwootRejected(ChatwootError):
    pass


def e164(number: Optional[str]) -> Optional[str]:
    """'5491122334455' / '+54 9 11 2233-4455' -> '+5491122334455'; None when not a number."""
    if not number or not re.fullmatch(r"[\d\s()+.-]+", number):
        return None
    value = "+" + only_digits(number)  # ASCII digits whatever script they came in
    return value if _E164.match(value) else None


def _error_text(body: Any) -> str:
    if isinstance(body, dict):
        for key in ("error", "message", "errors"):
            if body.get(key):
                return str(body[key])
    return str(body)[:300] if body else ""


class ChatwootClient:
    def __init__(self, settings: ChatwootSettings, options: ChatwootConfig,
                 session: Optional[requests.Session] = None) -> None:
        self.settings = settings
        self.options = options
        self.session = session or requests.Session()
        self.inbox_id = int(settings.inbox_id) if str(settings.inbox_id).isdigit() else settings.inbox_id
        self._base = f"{settings.url}/api/v1/accounts/{settings.account_id}"

    def close(self) -> None:
        self.session.close()

    # transport -------------------------------------------------------------------------
    def _request(self, method: str, path: str, *, json: Any = None,
                 params: Optional[Dict[str, Any]] = None, files: Any = None,
                 data: Any = None) -> Any:
        url = f"{self._base}{path}"
        headers = {"api_access_token": self.settings.api_token, "Accept": "application/json"}
        writes = method != "GET"
        try:
            response = self.session.request(
                method, url, json=json, params=params, files=files, data=data, headers=headers,
                timeout=(self.options.connect_timeout, self.options.read_timeout),
            )
        except requests.ConnectTimeout as error:
            raise ChatwootUnavailable(f"{method} {path}: connect timeout") from error
        except requests.Timeout as error:
            raise ChatwootUnavailable(f"{method} {path}: no answer in time", ambiguous=writes) from error
        except requests.ConnectionError as error:
            # refused: nothing was sent; otherwise it may have reached Chatwoot before the break
            refused = "NewConnectionError" in repr(error) or "Connection refused" in repr(error)
            raise ChatwootUnavailable(f"{method} {path}: connection failed: {type(error).__name__}",
                                      ambiguous=writes and not refused) from error
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = response.text[:500]
        status = response.status_code
        if 200 <= status < 300:
            return body
        message = f"{method} {path}: HTTP {status} {_error_text(body)}".strip()
        if status in (401, 403):
            raise ChatwootAuthError(message, status=status, body=body)
        if status == 404:
            raise ChatwootNotFound(message, status=status, body=body)
        if status == 429:
            raise ChatwootUnavailable(message, status=status, body=body)
        if status >= 500:
            raise ChatwootUnavailable(message, status=status, body=body, ambiguous=writes)
        raise ChatwootRejected(message, status=status, body=body)

    # contacts --------------------------------------------------------------------------
    def search_contacts(self, query: str, page: int = 1) -> List[Dict[str, Any]]:
        body = self._request("GET", "/contacts/search", params={"q": query, "page": page})
        payload = (body or {}).get("payload") if isinstance(body, dict) else None
        return payload if isinstance(payload, list) else []

    def create_contact(self, *, name: str, phone: Optional[str], identifier: Optional[str]) -> Dict[str, Any]:
        payload: Dict[str, Any] = {"inbox_id": self.inbox_id, "name": name}
        if phone:
            payload["phone_number"] = phone
        if identifier:
            payload["identifier"] = identifier
        body = self._request("POST", "/contacts", json=payload)
        contact = (((body or {}).get("payload") or {}).get("contact")) if isinstance(body, dict) else None
        if not isinstance(contact, dict) or "id" not in contact:
            raise ChatwootUnavailable(f"POST /contacts: unexpected answer {str(body)[:200]}")
        return contact

    def _find_contact(self, query: str, field: str, value: str) -> Optional[Dict[str, Any]]:
        """Chatwoot's search matches substrings: keep only an exact match of `field`."""
        for page in range(1, self.options.contact_search_pages + 1):
            results = self.search_contacts(query, page)
            for contact in results:
                if str(contact.get(field) or "") == value:
                    return contact
            if len(results) < SEARCH_PAGE_SIZE:
                break
        return None

    def find_or_create_contact(self, *, phone: Optional[str], identifier: str,
                               name: Optional[str]) -> Dict[str, Any]:
        """The contact with exactly this E.164 phone (or, without a phone, this identifier),
        created in our inbox when there is none."""
        def find() -> Optional[Dict[str, Any]]:
            found = self._find_contact(phone, "phone_number", phone) if phone else None
            return found or self._find_contact(identifier, "identifier", identifier)

        contact = find()
        if contact:
            return contact
        try:
            return self.create_contact(name=name or phone or identifier, phone=phone, identifier=identifier)
        except ChatwootRejected as error:
            # "has already been taken": someone created it meanwhile, or search missed it
            contact = find()
            if contact:
                return contact
            raise error

    # conversations ---------------------------------------------------------------------
    def create_conversation(self, *, contact_id: int, status: str,
                            source_id: Optional[str] = None) -> Dict[str, Any]:
        payload: Dict[str, Any] = {"inbox_id": self.inbox_id, "contact_id": contact_id, "status": status}
        if source_id:
            payload["source_id"] = source_id
        body = self._request("POST", "/conversations", json=payload)
        if not isinstance(body, dict) or "id" not in body:
            raise ChatwootUnavailable(f"POST /conversations: unexpected answer {str(body)[:200]}")
        return body

    def get_conversation(self, conversation_id: int) -> Dict[str, Any]:
        body = self._request("GET", f"/conversations/{conversation_id}")
        return body if isinstance(body, dict) else {}

    def toggle_status(self, conversation_id: int, status: str) -> Dict[str, Any]:
        body = self._request("POST", f"/conversations/{conversation_id}/toggle_status",
                             json={"status": status})
        return ((body or {}).get("payload") or {}) if isinstance(body, dict) else {}

    def assign_team(self, conversation_id: int, team_id: int) -> Any:
        """Chatwoot answers the team, or null when the id is not a team of the account."""
        body = self._request("POST", f"/conversations/{conversation_id}/assignments",
                             json={"team_id": team_id})
        if body is None:
            raise ChatwootRejected(f"team {team_id} is not a team of account {self.settings.account_id}")
        return body

    # messages --------------------------------------------------------------------------
    def create_message(self, conversation_id: int, content: str, *, message_type: str = "outgoing",
                       private: bool = False, source_id: Optional[str] = None,
                       attachments: Sequence[Dict[str, Any]] = ()) -> Dict[str, Any]:
        """`source_id` marks the message as ours: newer Chatwoot stores it and sends it back in
        webhooks and message lists (older versions ignore it)."""
        if message_type not in ("incoming", "outgoing"):
            raise ValueError(f"message_type must be incoming or outgoing, not {message_type!r}")
        path = f"/conversations/{conversation_id}/messages"
        if attachments:
            fields = [("content", content), ("message_type", message_type),
                      ("private", "true" if private else "false")]
            if source_id:
                fields.append(("source_id", source_id))
            handles = []
            try:
                files = []
                for attachment in attachments:
                    handle = open(attachment["path"], "rb")
                    handles.append(handle)
                    name = attachment.get("filename") or handle.name.rsplit("/", 1)[-1]
                    kind = attachment.get("mime_type") or "application/octet-stream"
                    files.append(("attachments[]", (name, handle, kind)))
                body = self._request("POST", path, data=fields, files=files)
            finally:
                for handle in handles:
                    handle.close()
        else:
            payload: Dict[str, Any] = {"content": content, "message_type": message_type,
                                       "private": private, "content_type": "text"}
            if source_id:
                payload["source_id"] = source_id
            body = self._request("POST", path, json=payload)
        if not isinstance(body, dict) or "id" not in body:
            raise ChatwootUnavailable(f"POST {path}: unexpected answer {str(body)[:200]}", ambiguous=True)
        return body

    def list_messages(self, conversation_id: int) -> List[Dict[str, Any]]:
        """The latest messages of a conversation (Chatwoot's first page, newest last)."""
        body = self._request("GET", f"/conversations/{conversation_id}/messages")
        payload = (body or {}).get("payload") if isinstance(body, dict) else None
        return payload if isinstance(payload, list) else []

    # labels and custom attributes ---------------------------------------------------------
    def get_labels(self, conversation_id: int) -> List[str]:
        body = self._request("GET", f"/conversations/{conversation_id}/labels")
        payload = (body or {}).get("payload") if isinstance(body, dict) else None
        return [str(label) for label in payload] if isinstance(payload, list) else []

    def set_labels(self, conversation_id: int, labels: Sequence[str]) -> List[str]:
        """Replaces the conversation's labels (Chatwoot's semantics): use `add_labels`."""
        body = self._request("POST", f"/conversations/{conversation_id}/labels",
                             json={"labels": list(labels)})
        payload = (body or {}).get("payload") if isinstance(body, dict) else None
        return [str(label) for label in payload] if isinstance(payload, list) else list(labels)

    def add_labels(self, conversation_id: int, labels: Iterable[str]) -> List[str]:
        """Read, merge, write: the labels it has stay, ours are added."""
        current = self.get_labels(conversation_id)
        merged = list(current)
        for label in labels:
            if label and label not in merged:
                merged.append(label)
        if merged == current:
            return current
        return self.set_labels(conversation_id, merged)

    def merge_custom_attributes(self, conversation_id: int, attributes: Dict[str, Any]) -> Dict[str, Any]:
        """Read, merge, write: attributes it has stay unless we give a new value."""
        conversation = self.get_conversation(conversation_id)
        current = conversation.get("custom_attributes")
        if not isinstance(current, dict):
            logger.warning("conversation without custom_attributes in its answer; merging with none",
                           extra={"chatwoot_conversation": conversation_id})
            current = {}
        merged = {**current, **{k: v for k, v in attributes.items() if v is not None}}
        if merged == current:
            return current
        body = self._request("POST", f"/conversations/{conversation_id}/custom_attributes",
                             json={"custom_attributes": merged})
        result = (body or {}).get("custom_attributes") if isinstance(body, dict) else None
        return result if isinstance(result, dict) else merged
