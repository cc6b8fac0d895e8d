"""The one client of Rasa's HTTP API, for workers (sync, `requests`): `trigger_intent` to speak
to a user, and `resume_conversation` to give a conversation back to the bot after a person.

    POST http://127.0.0.1:{RASA_PORT}/conversations/{id}/trigger_intent?output_channel=latest&token=…
    {"name": "EXTERNAL_ticket_delivered", "entities": {"ticket_number": "1042", ...}}

Rasa runs the intent on the conversation's tracker, so the message goes through the domain's
responses and the conversation's own channel (`latest`: the channel the user last wrote from),
and it is on the tracker. The token is `RASA_AUTH_TOKEN` (settings `rasa_auth_token`).

Retries only where nothing can have been said twice: connection refused or timed out before
sending, and 502/503/504 (Rasa not up, or a proxy without Rasa behind it). A read timeout or a
500 may have sent the message, so they are not retried here; the job decides.
"""
import logging
import time
from typing import Any, Dict, Optional
from urllib.parse import quote

import requests

from helpdesk.settings import Settings, load_settings

logger = logging.getLogger(__name__)

_RETRY_STATUSES = {502, 503, 504}


class RasaError(Exception):
    """Base class; `retryable` tells the job whether another try may help."""

    retryable = True


class RasaUnavailable(RasaError):
    """Rasa did not answer, or answered 5xx; the message may or may not have gone out."""


class RasaRejected(RasaError):
    """Rasa refused the call (bad token, unknown intent, bad request): retrying will not help."""

    retryable = False


def rasa_url(settings: Optional[Settings] = None) -> str:
    settings = settings or load_settings()
    return f"http://127.0.0.1:{settings.rasa_port}"


def trigger_intent(
    conversation_id: str,
    intent: str,
    entities: Optional[Dict[str, Any]] = None,
    *,
    output_channel: str = "latest",
    settings: Optional[Settings] = None,
    session: Optional[requests.Session] = None,
    connect_timeout: float = 3.0,
    read_timeout: float = 30.0,
    retries: int = 2,
    backoff: float = 0.5,
) -> Dict[str, Any]:
    """Run `intent` (with `entities`) on the conversation; Rasa's JSON answer.

    Raises RasaRejected (4xx) or RasaUnavailable (no answer, 5xx).
    """
    settings = settings or load_settings()
    url = f"{rasa_url(settings)}/conversations/{quote(conversation_id, safe='')}/trigger_intent"
    params = {"output_channel": output_channel}
    if settings.rasa_auth_token:
        params["token"] = settings.rasa_auth_token
    body = {"name": intent, "entities": {k: v for k, v in (entities or {}).items() if v is not None}}
    http = session or requests
    for attempt in range(retries + 1):
        last = attempt == retries
        try:
            response = http.post(url, params=params, json=body, timeout=(connect_timeout, read_timeout))
        except (requests.ConnectTimeout, requests.ConnectionError) as error:
            sent = not _before_sending(error)
            if sent or last:
                raise RasaUnavailable(f"Rasa trigger_intent {intent}: {type(error).__name__}") from error
            time.sleep(backoff * (2 ** attempt))
            continue
        except requests.Timeout as error:
            raise RasaUnavailable(f"Rasa trigger_intent {intent}: no answer in {read_timeout} s") from error
        except requests.RequestException as error:
            raise RasaUnavailable(f"Rasa trigger_intent {intent}: {type(error).__name__}") from error
        if response.status_code in _RETRY_STATUSES and not last:
            time.sleep(backoff * (2 ** attempt))
            continue
        if response.status_code >= 500:
            raise RasaUnavailable(f"Rasa trigger_intent {intent} answered {response.status_code}")
        if response.status_code >= 400:
            raise RasaRejected(
                f"Rasa trigger_intent {intent} answered {response.status_code}: {response.text[:300]}"
            )
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        logger.info("intent triggered", extra={"intent": intent, "conversation_id": conversation_id})
        return answer if isinstance(answer, dict) else {}
    raise RasaUnavailable(f"Rasa trigger_intent {intent}: no answer")  # pragma: no cover


def resume_conversation(
    conversation_id: str,
    *,
    settings: Optional[Settings] = None,
    session: Optional[requests.Session] = None,
    connect_timeout: float = 3.0,
    read_timeout: float = 30.0,
) -> None:
    """Append Rasa's `resume` event to the conversation's tracker
    (`POST /conversations/{id}/tracker/events`), so the bot answers the user again after a
    person. Appending it twice is harmless. Raises RasaUnavailable (no answer, 5xx) or
    RasaRejected (4xx)."""
    settings = settings or load_settings()
    url = f"{rasa_url(settings)}/conversations/{quote(conversation_id, safe='')}/tracker/events"
    params = {"include_events": "NONE"}
    if settings.rasa_auth_token:
        params["token"] = settings.rasa_auth_token
    http = session or requests
    try:
        response = http.post(url, params=params, json=[{"event": "resume"}],
                             timeout=(connect_timeout, read_timeout))
    except requests.RequestException as error:
        raise RasaUnavailable(f"Rasa resume: {type(error).__name__}") from error
    if response.status_code >= 500:
        raise RasaUnavailable(f"Rasa resume answered {response.status_code}")
    if response.status_code >= 400:
        raise RasaRejected(f"Rasa resume answered {response.status_code}: {response.text[:300]}")


def _before_sending(error: Exception) -> bool:
    """True when the connection failed before the request went out (refused, connect timeout)."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    text = repr(error)
    return "NewConnectionError" in text or "Connection refused" in text
