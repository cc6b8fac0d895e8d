"""The actions run against real resources: the ledger on a fresh SQLite file of the test, the
session's redis-server, the project's domain and config."""
from typing import Any, Dict, Iterator

import pytest

import actions.common
from tests.actions.helpers import Conversation, domain_dict
from tests.conftest import free_port


def _forget_resources() -> None:
    """The action module caches its ledger and its Redis clients; every test starts clean."""
    if actions.common.get_ledger.cache_info().currsize:
        actions.common.get_ledger().engine.dispose()
    actions.common.get_ledger.cache_clear()
    actions.common._optout.clear()


@pytest.fixture(autouse=True)
def _fresh_action_resources(_isolated_settings) -> Iterator[None]:
    _forget_resources()
    yield
    _forget_resources()


@pytest.fixture
def domain() -> Dict[str, Any]:
    return domain_dict()


@pytest.fixture
def conversation() -> Conversation:
    return Conversation(metadata={"sender_name": "Ana Pérez", "sender_phone": "5491122334455"})


@pytest.fixture
def bot_ledger(monkeypatch: pytest.MonkeyPatch, database_url: str, ledger):
    """The ledger the actions write to (DATABASE_URL), opened here too to read what they wrote."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    yield ledger
    ledger.engine.dispose()


@pytest.fixture(params=["sqlite-dir-blocked", "postgresql-refused"])
def ledger_down(request, monkeypatch: pytest.MonkeyPatch, tmp_path) -> str:
    """A DATABASE_URL whose ledger cannot be opened: an SQLite file under a path whose
    directory cannot be created (a plain file stands there), or a PostgreSQL server that
    refuses connections (nothing listens on the port)."""
    if request.param == "sqlite-dir-blocked":
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("")
        url = f"sqlite:///{blocker}/ledger.sqlite3"
    else:
        url = f"postgresql://helpdesk:secret@127.0.0.1:{free_port()}/helpdesk"
    monkeypatch.setenv("DATABASE_URL", url)
    return url


@pytest.fixture
def optout_redis(monkeypatch: pytest.MonkeyPatch, redis_url: str, redis_client):
    """The opt-out registry of the actions on the session's real Redis (flushed per test)."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    return redis_client


@pytest.fixture
def unreachable_redis(monkeypatch: pytest.MonkeyPatch) -> str:
    """REDIS_URL to a loopback port nothing listens on."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    monkeypatch.setenv("REDIS_URL", url)
    return url
