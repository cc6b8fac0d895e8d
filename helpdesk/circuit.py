"""A circuit breaker per backend, shared by every worker process through Redis.

When a backend (Zoho Desk, Chatwoot) fails `failure_threshold` times in a row, the circuit
opens: callers stop calling it for `recovery_seconds` and reschedule their work instead of
hammering an outage. Then it is half-open: exactly one caller (the probe) may try; its
success closes the circuit, its failure opens it again. A caller can also force it open until
a known time (Zoho's daily quota resets, rejected credentials); such a forced opening lasts
until its time whatever a call that began before it reports: a late success of another
worker does not close it.

State lives in one Redis hash per backend and every change is one Lua script, so any number
of processes on any number of machines see the same circuit. Times are epoch seconds by the
Redis server's clock (`TIME`, helpdesk/clock.py), the one clock every process shares; tests
pass a clock of their own.

    breaker = CircuitBreaker(redis_client, "zoho", failure_threshold=5, recovery_seconds=60)
    try:
        breaker.before_call()          # raises CircuitOpen with retry_after
    except CircuitOpen as closed:
        reschedule(closed.retry_after)
    ... call ...; breaker.record_success() or breaker.record_failure("503")
"""
from dataclasses import dataclass
from typing import Callable, Optional

import redis

from helpdesk import redis_keys
from helpdesk.clock import redis_now

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"

# KEYS: hash, probe. ARGV: now, probe_ttl_ms, probe_wait_ms.
# Returns {1} closed, {2} this caller is the half-open probe, {0, wait} open (wait in ms).
# While the probe is out, others look again soon (probe_wait), not when its TTL ends: a probe
# takes a second, its TTL only covers a probe that died.
_BEFORE_CALL = """
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
local now = tonumber(ARGV[1])
if open_until == 0 then return {1, 0} end
if now < open_until then return {0, math.ceil((open_until - now) * 1000)} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {2, 0} end
local ttl = redis.call('PTTL', KEYS[2])
if ttl < 0 then ttl = tonumber(ARGV[3]) end
return {0, math.min(ttl, tonumber(ARGV[3]))}
"""

# KEYS: hash, probe. ARGV: now, threshold, recovery, reason.
# A failure while closed counts; the threshold opens. A failure once the open time has passed
# (the probe, or a call that began before) opens again. Never shortens a longer opening.
_RECORD_FAILURE = """
local now = tonumber(ARGV[1])
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local reopen = (open_until == 0 and failures >= tonumber(ARGV[2])) or (open_until > 0 and now >= open_until)
if reopen then
  redis.call('HSET', KEYS[1], 'open_until', tostring(now + tonumber(ARGV[3])), 'reason', ARGV[4],
             'opened_at', ARGV[1])
  redis.call('HDEL', KEYS[1], 'forced')
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
"""

# KEYS: hash, probe. ARGV: until, reason, now. Opens until `until` unless already open longer;
# `forced`: no success closes it before that time.
_OPEN_UNTIL = """
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
if tonumber(ARGV[1]) > open_until then
  redis.call('HSET', KEYS[1], 'open_until', ARGV[1], 'reason', ARGV[2], 'opened_at', ARGV[3], 'forced', '1')
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
"""

# KEYS: hash, probe. ARGV: now. A success closes the circuit, unless it was forced open until
# a time not reached yet (quota, credentials): then the success was of a call that began before
# the opening, and says nothing about what forced it. Returns 1 closed, 0 left open.
_RECORD_SUCCESS = """
if redis.call('HGET', KEYS[1], 'forced') == '1' then
  local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
  if tonumber(ARGV[1]) < open_until then return 0 end
end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
"""


class CircuitOpen(Exception):
    """The backend is resting; try again in `retry_after` seconds."""

    def __init__(self, backend: str, retry_after: float, reason: str = "") -> None:
        super().__init__(f"{backend} circuit open for {retry_after:.1f} s more ({reason or 'failures'})")
        self.backend = backend
        self.retry_after = retry_after
        self.reason = reason


@dataclass(frozen=True)
class CircuitState:
    state: str
    failures: int
    open_until: float
    reason: str


class CircuitBreaker:
    def __init__(
        self,
        client: redis.Redis,
        backend: str,
        *,
        failure_threshold: int = 5,
        recovery_seconds: float = 60.0,
        probe_seconds: Optional[float] = None,
        probe_wait_seconds: float = 2.0,
        clock: Optional[Callable[[], float]] = None,
    ) -> None:
        self.client = client
        self.backend = backend
        self.failure_threshold = failure_threshold
        self.recovery_seconds = recovery_seconds
        # how long a probe may take before another caller may probe (a crashed probe)
        self.probe_seconds = probe_seconds if probe_seconds is not None else max(recovery_seconds, 1.0)
        # how soon the others look again while the probe is out
        self.probe_wait_seconds = probe_wait_seconds
        # the Redis server's clock, shared by every process (helpdesk/clock.py)
        self.clock = clock or (lambda: redis_now(client))
        self._keys = [redis_keys.circuit(backend), redis_keys.circuit_probe(backend)]
        self._before_call = client.register_script(_BEFORE_CALL)
        self._record_failure = client.register_script(_RECORD_FAILURE)
        self._open_until = client.register_script(_OPEN_UNTIL)
        self._record_success = client.register_script(_RECORD_SUCCESS)

    def before_call(self) -> bool:
        """Raise CircuitOpen when calls must wait; True when this call is the half-open probe."""
        verdict, wait_ms = self._before_call(
            keys=self._keys,
            args=[repr(self.clock()), int(self.probe_seconds * 1000), int(self.probe_wait_seconds * 1000)],
        )
        if int(verdict) == 0:
            raise CircuitOpen(self.backend, int(wait_ms) / 1000.0, self._reason())
        return int(verdict) == 2

    def record_success(self) -> bool:
        """The backend answered: the circuit closes and the failure count starts again, unless
        it is forced open (`open_until`) until a time not reached yet. True when it closed."""
        return bool(self._record_success(keys=self._keys, args=[repr(self.clock())]))

    def record_failure(self, reason: str = "") -> bool:
        """Count a failure; True when it opened (or re-opened) the circuit."""
        opened = self._record_failure(
            keys=self._keys,
            args=[repr(self.clock()), self.failure_threshold, repr(float(self.recovery_seconds)), reason[:200]],
        )
        return bool(opened)

    def open_until(self, until: float, reason: str) -> bool:
        """Open until an epoch time (quota reset, credentials fixed); never shortens an opening."""
        return bool(self._open_until(keys=self._keys, args=[repr(float(until)), reason[:200], repr(self.clock())]))

    def open_for(self, seconds: float, reason: str) -> bool:
        return self.open_until(self.clock() + seconds, reason)

    def state(self) -> CircuitState:
        values = {k.decode(): v.decode() for k, v in self.client.hgetall(self._keys[0]).items()}
        open_until = float(values.get("open_until") or 0)
        failures = int(values.get("failures") or 0)
        if open_until == 0:
            state = CLOSED
        elif self.clock() < open_until:
            state = OPEN
        else:
            state = HALF_OPEN
        return CircuitState(state=state, failures=failures, open_until=open_until, reason=values.get("reason", ""))

    def reset(self) -> None:
        """Closed, whatever opened it (an operator's decision)."""
        self.client.delete(*self._keys)

    def _reason(self) -> str:
        value = self.client.hget(self._keys[0], "reason")
        return value.decode() if value else ""
