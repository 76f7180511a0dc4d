"""The complaint document as `json` (its text, validated) instead of `jsonb`.

The document is read whole (`document::text`, parsed by pydantic) and written whole; no
query looks inside it but the NPS report, which `json` serves as well. jsonb converted
every read back to text and parsed every write into its binary form. Locking and reading
500 documents of 1.5 kB, then writing them back (as a batch of SLA firings does), on the
embedded Postgres 18, two rounds of 50,000: 11.2-11.9 µs and 14.4-14.5 µs a row as jsonb,
6.3-6.6 µs and 9.2-9.7 µs as json.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE complaints ALTER COLUMN document TYPE json USING document::json")


def downgrade() -> None:
    op.execute("ALTER TABLE complaints ALTER COLUMN document TYPE jsonb USING document::jsonb")
