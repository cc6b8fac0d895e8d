"""Zoho Desk's errors, each telling the caller what to do (the table in helpdesk/zoho/client.py),
and what reads them off an HTTP answer (Retry-After, the JSON body)."""
import time
from typing import Any, Dict, List, Optional


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


def retry_after_of(response: Any) -> Optional[float]:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime  # only for a date-form Retry-After

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def answer_json(response: Any) -> Dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {"data": data}

