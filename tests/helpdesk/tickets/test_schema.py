"""helpdesk/tickets/schema.py: the ledger's migrations on real SQLite files: a new database, one
made before migrations (its rows kept), four processes opening a new one at once, and the
migrated schema equal to ledger.py's tables (a change there without a revision fails here)."""
import subprocess
import sys

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from helpdesk.tickets import Ledger
from helpdesk.tickets.ledger import make_engine, metadata
from helpdesk.tickets.schema import current, head, main, migrate
from tests.conftest import PROJECT


def test_a_new_database_is_migrated_to_exactly_the_ledgers_tables(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'new.sqlite3'}")
    assert current(engine) is None
    assert migrate(engine) == "none"
    assert current(engine) == head()
    assert migrate(engine) is None  # current: nothing to do
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == [], "ledger.py's tables changed without a migration revision"


def test_a_ledger_made_before_migrations_keeps_its_rows_and_gains_what_it_lacked(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    engine = make_engine(url)
    with engine.begin() as connection:  # the tickets table of the first version, one row
        connection.execute(text(
            "CREATE TABLE tickets (id VARCHAR(36) PRIMARY KEY, reference VARCHAR(32) NOT NULL "
            "UNIQUE, conversation_id VARCHAR(128) NOT NULL, subject VARCHAR(255) NOT NULL, "
            "description TEXT NOT NULL, priority VARCHAR(16) NOT NULL, classification "
            "VARCHAR(64) NOT NULL, department VARCHAR(64) NOT NULL, store VARCHAR(128), "
            "system VARCHAR(128), reporter_name VARCHAR(128), reporter_phone VARCHAR(32), "
            "channel VARCHAR(32), affected_person VARCHAR(128), error_messages TEXT NOT NULL, "
            "attachments TEXT NOT NULL, mentioned_users TEXT NOT NULL, correlation_id "
            "VARCHAR(64), state VARCHAR(32) NOT NULL, zoho_ticket_id VARCHAR(64), "
            "zoho_ticket_number VARCHAR(32), attempts INTEGER NOT NULL, last_error TEXT, "
            "created_at FLOAT NOT NULL, updated_at FLOAT NOT NULL)"))
        connection.execute(text(
            "INSERT INTO tickets VALUES ('t-1', 'HD-AAAAAA', 'c-1', 'Caja caída', 'No vende', "
            "'urgent', 'incident', 'it', 'Tienda 42', 'POS', 'Ana', '5491100000000', 'waha', "
            "NULL, '[]', '[]', '[]', 'corr', 'delivered', 'z-1', '105', 1, NULL, 1.0, 2.0)"))
    engine.dispose()

    ledger = Ledger(url)  # opening it migrates it
    assert current(ledger.engine) == head()
    record = ledger.find("HD-AAAAAA")
    assert record.subject == "Caja caída" and record.zoho_ticket_number == "105"
    assert record.announce is None and record.redacted_at is None  # the columns added later
    tables = set(inspect(ledger.engine).get_table_names())
    assert {"tickets", "human_notices", "handoff_requests", "opt_outs"} <= tables


def test_four_processes_opening_a_new_ledger_at_once_all_start(tmp_path):
    """`make run`'s workers and the action server starting together on a fresh var/."""
    url = f"sqlite:///{tmp_path / 'var' / 'ledger.sqlite3'}"
    code = ("import sys; from helpdesk.tickets import Ledger; "
            "Ledger(sys.argv[1]).add_human_notice('startup', 'listo'); print('ok')")
    processes = [subprocess.Popen([sys.executable, "-c", code, url], cwd=PROJECT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
    results = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0, 0], results
    ledger = Ledger(url)
    assert current(ledger.engine) == head()
    with ledger.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM human_notices")).scalar() == 4
        assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1


def test_the_command_says_where_the_ledger_is(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    assert main(["current"]) == 0
    assert capsys.readouterr().out.startswith("ledger revision none; newest ")
    assert main(["upgrade"]) == 0
    assert f"ledger at revision {head()} (was none)" in capsys.readouterr().out
    assert main(["upgrade"]) == 0
    assert "(already)" in capsys.readouterr().out
    assert main(["nonsense"]) == 2
