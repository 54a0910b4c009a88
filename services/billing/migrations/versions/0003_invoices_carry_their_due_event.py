"""The daily run writes less per invoice:

- invoice.due without an outbox row: each new invoice is its own event record, relayed
  through the `invoice_due_events` view (shaped like the outbox) until `due_event_sent_at`
  is set. Invoices issued before this revision had their event written to the outbox.
- an invoice line names its run instead of its invoice: (user, run) is unique among
  invoices, so the run needs no invoice id per line.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# The envelope of shardz_common.events.envelope, as text. Every value is a uuid, an integer
# or JSON-encoded by to_json, so the body is valid JSON. The event id is the invoice id: one
# `invoice.due` per invoice.
VIEW_SQL = """
CREATE VIEW invoice_due_events AS
SELECT i.id,
       CAST('invoice.due' AS varchar(120)) AS type,
       '{"specversion":"1.0","id":"' || i.id
       || '","source":"billing","type":"invoice.due","time":' || to_json(i.created_at)
       || ',"datacontenttype":"application/json",'
       || '"dataschema":"urn:shardz:event:invoice.due:v1","subject":"' || i.id
       || '","data":{"invoice_id":"' || i.id || '","user_id":"' || i.user_id
       || '","amount_minor":' || i.amount_minor || ',"currency":' || to_json(i.currency)
       || ',"due_at":' || to_json(i.due_at) || '}}' AS body,
       CAST(NULL AS varchar(128)) AS traceparent,
       i.created_at,
       i.due_event_sent_at AS sent_at,
       i.due_event_attempts AS attempts
FROM invoices i
"""


def upgrade() -> None:
    op.add_column(
        "invoices", sa.Column("due_event_sent_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "invoices",
        sa.Column("due_event_attempts", sa.Integer(), server_default="0", nullable=False),
    )
    op.execute("UPDATE invoices SET due_event_sent_at = created_at")
    op.create_index(
        "ix_invoices_due_event_unsent",
        "invoices",
        ["created_at"],
        postgresql_where=sa.text("due_event_sent_at IS NULL"),
    )
    op.execute(VIEW_SQL)
    op.add_column("invoice_lines", sa.Column("run_id", sa.BigInteger(), nullable=True))
    op.execute(
        "UPDATE invoice_lines l SET run_id = i.run_id FROM invoices i WHERE i.id = l.invoice_id"
    )
    op.alter_column("invoice_lines", "run_id", nullable=False)
    op.drop_column("invoice_lines", "invoice_id")
    # wake the relays when a run's invoices commit, as an outbox insert does
    op.execute(
        "CREATE TRIGGER invoices_notify AFTER INSERT ON invoices"
        " FOR EACH STATEMENT EXECUTE FUNCTION shardz_outbox_notify()"
    )


def downgrade() -> None:
    op.add_column("invoice_lines", sa.Column("invoice_id", sa.UUID(), nullable=True))
    op.execute(
        "UPDATE invoice_lines l SET invoice_id = i.id FROM invoices i, subscriptions s"
        " WHERE s.id = l.subscription_id AND i.user_id = s.user_id AND i.run_id = l.run_id"
    )
    op.alter_column("invoice_lines", "invoice_id", nullable=False)
    op.drop_column("invoice_lines", "run_id")
    op.execute("DROP TRIGGER IF EXISTS invoices_notify ON invoices")
    op.execute("DROP VIEW IF EXISTS invoice_due_events")
    op.drop_index("ix_invoices_due_event_unsent", table_name="invoices")
    op.drop_column("invoices", "due_event_attempts")
    op.drop_column("invoices", "due_event_sent_at")
