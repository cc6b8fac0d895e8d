"""Whether a gateway's WhatsApp session works, as the gateway last reported it (WAHA's
`session.status` events). While it is down, replies wait in their outbox untried; the support
team is told once per outage; when it works again every waiting chat is due at once."""
import time
from typing import Any, Optional

from helpdesk import redis_keys

WORKING = "WORKING"
# WAHA's statuses in which nothing can be sent (STARTING passes within seconds: not counted)
DOWN = ("STOPPED", "FAILED", "SCAN_QR_CODE", "PASSKEY_REQUIRED", "PASSKEY_CONFIRMATION_REQUIRED")

# KEYS: session hash, outbox due zset.  ARGV: status, now, down statuses..., the outbox key
# prefix of the channel as the last ARGV. Returns "down" when an outage starts, "up" when one
# ends, "" otherwise.
_RECORD = """
local before = redis.call('HGET', KEYS[1], 'status')
local status, now, prefix = ARGV[1], ARGV[2], ARGV[#ARGV]
local down = false
local was_down = false
for i = 3, #ARGV - 1 do
  if status == ARGV[i] then down = true end
  if before == ARGV[i] then was_down = true end
end
redis.call('HSET', KEYS[1], 'status', status, 'at', now)
if down and not was_down then
  redis.call('HSET', KEYS[1], 'since', now)
  return 'down'
end
if status == 'WORKING' and was_down then
  local due = redis.call('ZRANGE', KEYS[2], 0, -1)
  for _, key in ipairs(due) do
    if string.sub(key, 1, string.len(prefix)) == prefix then
      redis.call('ZADD', KEYS[2], tonumber(now), key)
    end
  end
  return 'up'
end
return ''
"""


async def record_status(client: Any, channel: str, status: str) -> str:
    """Store what the gateway says of its session: "down" when an outage starts, "up" when it
    ends (the channel's waiting chats made due now), "" when nothing changed."""
    result = await client.eval(
        _RECORD, 2, redis_keys.gateway_session(channel), redis_keys.outbox_due(),
        status, f"{time.time():.3f}", *DOWN, redis_keys.outbox(channel, ""))
    return result.decode() if isinstance(result, bytes) else (result or "")


async def session_down(client: Any, channel: str) -> Optional[str]:
    """The status when the channel's session is down, else None (unknown counts as up)."""
    status = await client.hget(redis_keys.gateway_session(channel), "status")
    status = status.decode() if isinstance(status, bytes) else status
    return status if status in DOWN else None
