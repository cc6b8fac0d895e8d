"""The action server: rasa_sdk's own, with every call authenticated.

    python -m actions.server --actions actions --port 5055 --logging-config-file logging.yml

The options, logging, worker count (SANIC_WORKERS) and start-up are `rasa run actions`' own
(rasa_sdk's argument parser and `main_from_args`). Two things differ:

- it listens on ACTIONS_HOST (default 127.0.0.1) instead of rasa_sdk's 0.0.0.0;
- every request except `GET /health` must carry `Authorization: Bearer <token>`, the token
  being ACTION_SERVER_TOKEN (helpdesk.settings.action_server_token: from .env, else generated
  once into var/secrets/). Rasa sends it from endpoints.yml's `action_endpoint: headers:`.
  A missing or wrong token gets 401 with a JSON error, is logged (path and reason, never the
  token) and runs nothing. The comparison is constant-time (hmac.compare_digest).

`/health` stays open: it answers `{"status": "ok"}` and nothing else, runs no action, and
helpdesk/health.py, the test fixtures and process managers probe it. `/ready` is open too
and runs no action: Redis, the ledger and each configured integration's set-up (Zoho Desk:
the last `make zoho-check`), 200 or 503 with what is not ready, one line each (no secrets, no
ids: helpdesk/health.py `readiness`).

The check is attached through rasa_sdk's plugin hook (`attach_sanic_app_extensions`),
registered here in code: rasa_sdk calls it on the app it builds, before it starts serving,
so the rest of rasa_sdk's `run` stays as it is (no copy of it to keep in step).
"""
import hmac
import logging
import os
from typing import Any, Optional

import pluggy
from sanic import Sanic, response
from sanic.request import Request

from helpdesk.health import readiness
from helpdesk.settings import action_server_token, load_settings

logger = logging.getLogger("actions.server")  # also when run as __main__

OPEN_PATHS = frozenset({"/health", "/ready"})
SCHEME = "Bearer "

hookimpl = pluggy.HookimplMarker("rasa_sdk")


def refusal(request: Request, expected: bytes) -> Optional[str]:
    """Why the request may not run (None: it may)."""
    if request.path in OPEN_PATHS:
        return None
    given = request.headers.get("authorization")
    if not given:
        return "missing token"
    if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected):
        return "wrong token"
    return None


def require_token(app: Sanic, token: str) -> None:
    """A request middleware on `app`: calls without the token get 401 and run nothing."""
    if not token:
        raise ValueError("the action server needs a token (ACTION_SERVER_TOKEN)")
    expected = (SCHEME + token).encode("utf-8")

    async def check_token(request: Request) -> Any:
        reason = refusal(request, expected)
        if reason is None:
            return None
        logger.warning("action server call refused",
                       extra={"path": request.path, "method": request.method, "reason": reason})
        return response.json(
            {"error": "unauthorized", "detail": f"{reason}: send Authorization: Bearer <ACTION_SERVER_TOKEN>"},
            status=401,
        )

    app.register_middleware(check_token, "request")


class TokenCheck:
    """rasa_sdk plugin: adds the token check to the app rasa_sdk starts."""

    def __init__(self, token: str) -> None:
        self.token = token

    @hookimpl
    def attach_sanic_app_extensions(self, app: Sanic) -> None:
        require_token(app, self.token)
        serve_readiness(app)


def serve_readiness(app: Sanic) -> None:
    """`GET /ready` on the action server (it is itself the action server: not checked)."""

    async def ready(request: Request) -> Any:
        ok, body = await readiness(load_settings(), action_server=False)
        return response.json(body, status=200 if ok else 503)

    app.add_route(ready, "/ready", methods=["GET"])


def main() -> None:
    # rasa_sdk's CLI pieces: only the action server process needs them
    from rasa_sdk.__main__ import main_from_args
    from rasa_sdk.endpoint import create_argument_parser
    from rasa_sdk.plugin import plugin_manager

    settings = load_settings()
    parser = create_argument_parser()
    # `rasa run actions` spells it this way (Rasa's own logging options); rasa_sdk's parser
    # only knows --logging-config_file
    parser.add_argument("--logging-config-file", dest="logging_config_file", default=None)
    args = parser.parse_args()
    # rasa_sdk's run() reads the host from SANIC_HOST
    os.environ["SANIC_HOST"] = settings.actions_host
    plugin_manager().register(TokenCheck(action_server_token(settings)))
    main_from_args(args)


if __name__ == "__main__":
    main()
