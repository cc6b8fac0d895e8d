"""The ledger as it was when migrations began (2026-12): the four tables.

A database made before migrations (the ledger created its tables itself, and added the columns
a later version brought on open) gets what it lacks of this, its rows kept: tables created,
columns added (nullable, or with their default). A new database gets it all. The definitions
are frozen here on purpose: later changes to helpdesk/tickets/ledger.py come with a new
revision, never an edit of this one.
"""
from alembic import op
from sqlalchemy import Boolean, Column, Float, Integer, MetaData, String, Table, Text, inspect, text

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

metadata = MetaData()

tickets_table = Table(
    "tickets",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("reference", String(32), nullable=False, unique=True),
    Column("conversation_id", String(128), nullable=False, index=True),
    Column("subject", String(255), nullable=False),
    Column("description", Text, nullable=False),
    Column("priority", String(16), nullable=False),
    Column("classification", String(64), nullable=False),
    Column("department", String(64), nullable=False),
    Column("store", String(128)),
    Column("system", String(128)),
    Column("reporter_name", String(128)),
    Column("reporter_phone", String(32)),
    Column("channel", String(32)),
    Column("affected_person", String(128)),
    Column("error_messages", Text, nullable=False, default="[]"),
    Column("attachments", Text, nullable=False, default="[]"),
    Column("mentioned_users", Text, nullable=False, default="[]"),
    Column("correlation_id", String(64)),
    Column("state", String(32), nullable=False, index=True),
    Column("zoho_ticket_id", String(64)),
    Column("zoho_ticket_number", String(32), index=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # delivery bookkeeping (added with Zoho delivery; older databases get them on open)
    Column("zoho_contact_id", String(64)),
    Column("zoho_web_url", String(512)),
    Column("zoho_status", String(120)),
    Column("zoho_status_type", String(32)),
    Column("status_checked_at", Float),
    Column("create_sent_at", Float),
    Column("next_attempt_at", Float),
    Column("delivered_at", Float),
    Column("failure_kind", String(32)),
    Column("field_errors", Text),
    Column("announce", String(16)),
    Column("announced_at", Float),
    # retention (workers/retention_jobs.py): when the personal fields were blanked
    Column("redacted_at", Float),
)

human_notices_table = Table(
    "human_notices",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(64), nullable=False, index=True),
    Column("ticket_id", String(36), index=True),
    Column("text", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("sent_at", Float),
    Column("send_attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("acknowledged", Boolean, nullable=False, default=False),
)

handoff_requests_table = Table(
    "handoff_requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("conversation_id", String(128), nullable=False, index=True),
    Column("reason", String(64), nullable=False),
    Column("text", Text),
    Column("correlation_id", String(64)),
    Column("created_at", Float, nullable=False),
)

opt_outs_table = Table(
    "opt_outs",
    metadata,
    Column("conversation_id", String(128), primary_key=True),
    Column("created_at", Float, nullable=False),
)


def upgrade() -> None:
    bind = op.get_bind()
    inspector = inspect(bind)
    for table in metadata.sorted_tables:
        if not inspector.has_table(table.name):
            table.create(bind)  # with its indexes
            continue
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            kind = column.type.compile(dialect=bind.dialect)
            default = ""
            if column.default is not None and not callable(column.default.arg):
                value = column.default.arg
                default = f" NOT NULL DEFAULT {int(value) if isinstance(value, bool) else value!r}"
            bind.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}{default}"))


def downgrade() -> None:
    raise NotImplementedError("the ledger's first revision is not undone: restore a backup")
