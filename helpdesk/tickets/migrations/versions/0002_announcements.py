"""The announcements a user has been told (helpdesk/tickets/ledger.py `announcements`): one row
per ticket and thing announced, written by the action that speaks in the same step, so a
worker's retry or a slow first trigger_intent never says it twice (issue 13).

Revision 0002, after 0001, written 2026-12-04.
"""
from alembic import op
from sqlalchemy import Column, Float, String

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "announcements",
        Column("key", String(128), primary_key=True),
        Column("conversation_id", String(128), nullable=False),
        Column("spoken_at", Float, nullable=False),
    )
    op.create_index("ix_announcements_spoken_at", "announcements", ["spoken_at"])


def downgrade() -> None:
    op.drop_index("ix_announcements_spoken_at", "announcements")
    op.drop_table("announcements")
