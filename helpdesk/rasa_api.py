"""The one client of the Rasa server, for workers, actions and `make shell` (sync,
`requests`): `trigger_intent` to speak to a user, `resume_conversation` to give a conversation
back to the bot after a person (`conversation_paused` tells whether it is with one), and `rest_message` to talk through the REST channel.

    POST http://127.0.0.1:{RASA_PORT}/conversations/{id}/trigger_intent?output_channel=latest
    Authorization: Bearer <JWT>
    {"name": "EXTERNAL_ticket_delivered", "entities": {"ticket_number": "1042", ...}}

Rasa runs the intent on the conversation's tracker, so the message goes through the domain's
responses and the conversation's own channel (`latest`: the channel the user last wrote from),
and it is on the tracker.

Authentication: the Rasa server (connectors/server.py) checks HS256 JWTs signed with
RASA_AUTH_TOKEN (or the generated `var/secrets/rasa_auth_token`, helpdesk.settings
`rasa_api_secret`); `api_headers` mints a short-lived one with Rasa's admin role for each call.
The secret itself never leaves the process, and nothing goes in a query string (proxies log
those). The REST channel has a token of its own (`rest_headers`).

Retries only where nothing can have been said twice: connection refused or timed out before
sending, and 502/503/504 (Rasa not up, or a proxy without Rasa behind it). A read timeout or a
500 may have sent the message, so they are not retried here; the job decides.
"""
import logging
import time
from typing import Any, Dict, List, Optional
from urllib.parse import quote

import jwt
import requests

from helpdesk.settings import Settings, load_settings, rasa_api_secret, rest_channel_token

logger = logging.getLogger(__name__)

_RETRY_STATUSES = {502, 503, 504}
# a minted token is good for this long (Rasa's JWT check allows 3 minutes of clock leeway)
JWT_LIFETIME_SECONDS = 120
JWT_ALGORITHM = "HS256"


class RasaError(Exception):
    """Base class; `retryable` tells the job whether another try may help."""

    retryable = True


class RasaUnavailable(RasaError):
    """Rasa did not answer, or answered 5xx; the message may or may not have gone out."""


class RasaRejected(RasaError):
    """Rasa refused the call (bad token, unknown intent, bad request): retrying will not help."""

    retryable = False
    status: Optional[int] = None


def rasa_url(settings: Optional[Settings] = None) -> str:
    settings = settings or load_settings()
    return f"http://127.0.0.1:{settings.rasa_port}"


def api_token(settings: Optional[Settings] = None, *, lifetime: float = JWT_LIFETIME_SECONDS) -> str:
    """A JWT Rasa's HTTP API accepts for every route (`user.role` "admin", rasa/server.py
    `requires_auth`), valid for `lifetime` seconds."""
    return signed_api_token(rasa_api_secret(settings or load_settings()), lifetime=lifetime)


def signed_api_token(secret: str, *, lifetime: float = JWT_LIFETIME_SECONDS) -> str:
    """`api_token` for a given secret (tests and benchmarks know theirs)."""
    now = int(time.time())
    claims = {"user": {"username": "helpdesk", "role": "admin"}, "iat": now,
              "exp": now + int(lifetime)}
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHM)


def api_headers(settings: Optional[Settings] = None) -> Dict[str, str]:
    """The header of one call to Rasa's HTTP API."""
    return {"Authorization": f"Bearer {api_token(settings)}"}


def rest_headers(settings: Optional[Settings] = None) -> Dict[str, str]:
    """The header of one message to the REST channel (REST_CHANNEL_TOKEN)."""
    settings = settings or load_settings()
    return {"Authorization": f"Bearer {rest_channel_token(settings)}"}


def rest_message(
    sender: str,
    text: str,
    *,
    settings: Optional[Settings] = None,
    session: Optional[requests.Session] = None,
    timeout: float = 120.0,
) -> List[Dict[str, Any]]:
    """One message through the REST channel (`POST /webhooks/rest/webhook`); the bot's
    messages. Raises RasaRejected (4xx: the channel off is 404, a wrong token 401) or
    RasaUnavailable (no answer, 5xx)."""
    settings = settings or load_settings()
    http = session or requests
    try:
        response = http.post(f"{rasa_url(settings)}/webhooks/rest/webhook",
                             json={"sender": sender, "message": text},
                             headers=rest_headers(settings), timeout=(3.0, timeout))
    except requests.RequestException as error:
        raise RasaUnavailable(f"REST channel: {type(error).__name__}") from error
    if response.status_code >= 500:
        raise RasaUnavailable(f"REST channel answered {response.status_code}")
    if response.status_code >= 400:
        rejected = RasaRejected(f"REST channel answered {response.status_code}: {response.text[:300]}")
        rejected.status = response.status_code
        raise rejected
    answer = response.json()
    return [m for m in answer if isinstance(m, dict)] if isinstance(answer, list) else []


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
    body = {"name": intent, "entities": {k: v for k, v in (entities or {}).items() if v is not None}}
    http = session or requests
    for attempt in range(retries + 1):
        last = attempt == retries
        try:
            response = http.post(url, params=params, json=body, headers=api_headers(settings),
                                 timeout=(connect_timeout, read_timeout))
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
    """Append Rasa's `resume` event and an `action_listen` to the conversation's tracker
    (`POST /conversations/{id}/tracker/events`), so the bot answers the user again after a
    person.

    The `action_listen` is what a turn ends with when the bot is not paused: while paused,
    Rasa logs the user's messages and predicts nothing, so the tracker ends with the handoff
    action followed by whatever the user wrote to the agent. Without it, the next intent (the
    resume intent the job triggers) would be read as coming right after the handoff action, no
    rule would match, Rasa's fallback would revert it and predict again from the old "quiero
    hablar con una persona": a second handoff. With it, the next message starts a fresh turn.
    Appending both twice is harmless. Raises RasaUnavailable (no answer, 5xx) or RasaRejected
    (4xx)."""
    settings = settings or load_settings()
    url = f"{rasa_url(settings)}/conversations/{quote(conversation_id, safe='')}/tracker/events"
    params = {"include_events": "NONE"}
    http = session or requests
    events = [{"event": "resume"}, {"event": "action", "name": "action_listen"}]
    try:
        response = http.post(url, params=params, json=events,
                             headers=api_headers(settings), timeout=(connect_timeout, read_timeout))
    except requests.RequestException as error:
        raise RasaUnavailable(f"Rasa resume: {type(error).__name__}") from error
    if response.status_code >= 500:
        raise RasaUnavailable(f"Rasa resume answered {response.status_code}")
    if response.status_code >= 400:
        raise RasaRejected(f"Rasa resume answered {response.status_code}: {response.text[:300]}")


def conversation_paused(
    conversation_id: str,
    *,
    settings: Optional[Settings] = None,
    session: Optional[requests.Session] = None,
    connect_timeout: float = 3.0,
    read_timeout: float = 30.0,
) -> bool:
    """Whether the bot is paused in the conversation (`GET /conversations/{id}/tracker`, its
    `paused` field): the truth about a handoff when its Redis mark has expired or was never
    written. Raises RasaUnavailable (no answer, 5xx) or RasaRejected (4xx)."""
    settings = settings or load_settings()
    url = f"{rasa_url(settings)}/conversations/{quote(conversation_id, safe='')}/tracker"
    http = session or requests
    try:
        response = http.get(url, params={"include_events": "NONE"}, headers=api_headers(settings),
                            timeout=(connect_timeout, read_timeout))
    except requests.RequestException as error:
        raise RasaUnavailable(f"Rasa tracker: {type(error).__name__}") from error
    if response.status_code >= 500:
        raise RasaUnavailable(f"Rasa tracker answered {response.status_code}")
    if response.status_code >= 400:
        raise RasaRejected(f"Rasa tracker answered {response.status_code}: {response.text[:300]}")
    try:
        return bool(response.json().get("paused"))
    except (ValueError, AttributeError) as error:
        raise RasaUnavailable("Rasa tracker: the answer is not a tracker") from error


def _before_sending(error: Exception) -> bool:
    """True when the connection failed before the request went out (refused, connect timeout)."""
    if isinstance(error, requests.ConnectTimeout):
        return True
    text = repr(error)
    return "NewConnectionError" in text or "Connection refused" in text
