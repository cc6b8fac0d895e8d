"""How Rasa 3.6's HTTP API authenticates a call when started as connectors/server.py starts it
(`jwt_secret` set, `auth_token` not): rasa/server.py `requires_auth` with sanic-jwt.

- `Authorization: Bearer <JWT>`, HS256, signed with the secret, not expired (sanic-jwt's
  default leeway: 180 s): `user.role` "admin" passes every route; "user" only the
  conversation named `user.username`; another role 403 "NotAuthorized".
- anything else, a `?token=` query string included: 401 "NotAuthenticated".
"""
from typing import Any, Dict, Mapping, Optional, Tuple

import jwt

LEEWAY_SECONDS = 180


def error(status: int, reason: str, message: str) -> Dict[str, Any]:
    return {"version": "3.6.21", "status": "failure", "message": message, "reason": reason,
            "details": {}, "help": None, "code": status}


def claims_of(headers: Mapping[str, str], secret: str) -> Optional[Dict[str, Any]]:
    """The verified claims of the Bearer JWT in `headers`, or None."""
    header = headers.get("Authorization") or ""
    if not header.startswith("Bearer "):
        return None
    try:
        return jwt.decode(header[len("Bearer "):].strip(), secret, algorithms=["HS256"],
                          leeway=LEEWAY_SECONDS)
    except jwt.PyJWTError:
        return None


def refusal(headers: Mapping[str, str], secret: Optional[str],
            conversation_id: Optional[str] = None) -> Optional[Tuple[int, Dict[str, Any]]]:
    """(status, Rasa's error body) when the call is not allowed; None when it is (or when the
    fake runs without a secret, like Rasa without authentication)."""
    if secret is None:
        return None
    claims = claims_of(headers, secret)
    if claims is None:
        return 401, error(401, "NotAuthenticated", "User is not authenticated.")
    user = claims.get("user") or {}
    if user.get("role") == "admin" or (
        user.get("role") == "user" and conversation_id is not None
        and user.get("username") == conversation_id
    ):
        return None
    return 403, error(403, "NotAuthorized", "User has insufficient permissions.")
