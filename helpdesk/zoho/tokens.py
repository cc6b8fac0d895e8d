"""Zoho's OAuth access token, shared by every worker through Redis with its expiry, refreshed
by one process at a time under a Redis lock, within Zoho's budget of refreshes (ten per ten
minutes per refresh token). Wire format: ../shared/docs/zoho-chatwoot-apis.md, part A."""
import logging
import time
from typing import Optional, Tuple

import redis
import requests

from helpdesk import redis_keys
from helpdesk.config import DeliveryPolicy
from helpdesk.settings import ZohoSettings
from helpdesk.zoho.errors import (ZohoAuthError, ZohoRateLimited, ZohoTransient, answer_json,
                                  retry_after_of)

logger = logging.getLogger("helpdesk.zoho.client")

TOKEN_PATH = "/oauth/v2/token"
# token endpoint errors that mean "these credentials will not work" (not a passing problem)
_REFUSED_GRANTS = {"invalid_code", "invalid_client", "invalid_client_secret", "invalid_grant",
                   "unauthorized_client", "invalid_redirect_uri"}


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
        body = answer_json(response)
        if response.status_code >= 500:
            raise ZohoTransient(f"Zoho token refresh answered {response.status_code}", status=response.status_code)
        if response.status_code == 429:
            raise ZohoRateLimited("Zoho token refresh answered 429", status=429,
                                  retry_after=retry_after_of(response) or self.policy.token_refresh_window)
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


