"""Complaints customers filed in the app before owner kinds: owned by the customer service
desk, a department, so its duty contact gets their SLA messages and callbacks.

They were owned by `customer_service_desk`, an id no staff record has: every SLA message
to the owner and every day-3/7/30 callback of theirs was undeliverable. A deployment that
had set COMPLAINTS_SELF_SERVICE_OWNER to something else updates its own.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

OLD, NEW = "customer_service_desk", "customer_service"


def upgrade() -> None:
    op.execute(f"""
        UPDATE complaints
        SET owner_id = '{NEW}',
            document = (document::jsonb
                || '{{"owner_id": "{NEW}", "owner_kind": "department"}}'::jsonb)::json
        WHERE owner_id = '{OLD}'
    """)


def downgrade() -> None:
    op.execute(f"""
        UPDATE complaints
        SET owner_id = '{OLD}',
            document = ((document::jsonb - 'owner_kind')
                || '{{"owner_id": "{OLD}"}}'::jsonb)::json
        WHERE owner_id = '{NEW}' AND document::jsonb ->> 'owner_kind' = 'department'
    """)
