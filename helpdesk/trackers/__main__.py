"""`python -m helpdesk.trackers migrate`: move every conversation Rasa's Redis tracker store kept
into this project's store (helpdesk/trackers/store.py). Each conversation is also moved the
first time it is read, so this is optional: it empties the old keys at once."""
import asyncio
import sys

import yaml
from rasa.shared.core.domain import Domain

from helpdesk.launch import redis_env
from helpdesk.settings import PROJECT_DIR, load_settings
from helpdesk.trackers.store import EventLogTrackerStore

# endpoints.yml's tracker_store keys that are not Redis' address (that comes from REDIS_URL)
OPTIONS = ("record_exp", "window_events", "legacy_key_prefix")


async def migrate() -> int:
    data = yaml.safe_load((PROJECT_DIR / "endpoints.yml").read_text(encoding="utf-8")) or {}
    configured = data.get("tracker_store") or {}
    redis = redis_env(load_settings().redis_url)
    store = EventLogTrackerStore(
        domain=Domain.load(str(PROJECT_DIR / "domain.yml")), host=redis["REDIS_HOST"],
        port=int(redis["REDIS_PORT"]), db=int(redis["REDIS_DB"]),
        password=redis["REDIS_PASSWORD"] or None,
        **{key: configured[key] for key in OPTIONS if key in configured})
    try:
        return await store.migrate_all()
    finally:
        await store.close()


def main(argv: list) -> int:
    if argv != ["migrate"]:
        print("usage: python -m helpdesk.trackers migrate", file=sys.stderr)
        return 2
    moved = asyncio.run(migrate())
    print(f"{moved} conversation(s) moved from Rasa's Redis tracker store")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
