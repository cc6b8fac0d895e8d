"""Jobs the worker test enqueues (importable by the worker process through PYTHONPATH)."""
import logging

import redis

from helpdesk.logs import correlation_id_var

logger = logging.getLogger(__name__)


def remember_correlation_id(redis_url: str, key: str) -> str:
    value = correlation_id_var.get() or ""
    logger.info("job ran")
    redis.Redis.from_url(redis_url).set(key, value)
    return value
