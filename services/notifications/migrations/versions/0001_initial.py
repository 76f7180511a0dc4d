# ruff: noqa: RUF001  (Chinese text uses full-width punctuation)
"""Platform tables, recipient replica, templates (seeded), notifications and their attempts.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from shared.migrations import create_platform_tables, drop_platform_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)

# The bank's first texts; edited later through PUT /templates/{key}.
TEMPLATES = [
    (
        "tier_upgrade_customer",
        "service",
        "尊敬的{customer_name}：恭喜您升级为{tier}！今后将由{served_by}为您提供专属服务。",
        "Dear {customer_name}, congratulations: you are now a {tier} customer. "
        "From now on you are served by {served_by}.",
    ),
    (
        "tier_customer_assigned",
        "service",
        "【客户分配】客户{customer_id}（{customer_name}）已评定为{tier}（原{previous_tier}，"
        "{direction}），存款总额{total_balance}元，现由贵团队维护。",
        "Customer assigned: {customer_id} ({customer_name}) is now {tier} "
        "(was {previous_tier}, {direction}), total deposits CNY {total_balance}; "
        "your team now looks after them.",
    ),
    (
        "complaint_received_customer",
        "service",
        "尊敬的{customer_name}：您的投诉已受理，工单号{ticket}，我们将于{resolution_due_at}前处理完毕。",
        "Dear {customer_name}, we have received your complaint, ticket {ticket}. "
        "It will be resolved by {resolution_due_at} (Beijing time).",
    ),
    (
        "complaint_resolved_customer",
        "service",
        "尊敬的{customer_name}：您的投诉（工单号{ticket}）已处理完毕，感谢您的耐心与支持。",
        "Dear {customer_name}, your complaint (ticket {ticket}) has been resolved. "
        "Thank you for your patience.",
    ),
    (
        "sla_warning_staff",
        "service",
        "【时限预警】投诉{complaint_id}（{severity}，客户{customer_id}，部门{department}）"
        "的{clock}时限将于{due_at}到期，请尽快处理。",
        "SLA warning: complaint {complaint_id} ({severity}, customer {customer_id}, "
        "department {department}) is due for {clock} at {due_at}.",
    ),
    (
        "sla_breached_staff",
        "service",
        "【超时升级{escalation_level}级】投诉{complaint_id}（{severity}，客户{customer_id}，"
        "部门{department}）的{clock}时限已于{due_at}到期，已超时{overdue}，请立即处理。",
        "SLA breach, escalation level {escalation_level}: complaint {complaint_id} "
        "({severity}, customer {customer_id}, department {department}) was due for {clock} "
        "at {due_at}; overdue by {overdue}.",
    ),
    (
        "callback_due_staff",
        "service",
        "【回访任务】请于{due_at}前致电客户{customer_id}（{customer_name}）。原因：{reason}；"
        "依据：{evidence}。",
        "Callback task: please call customer {customer_id} ({customer_name}) by {due_at}. "
        "Reason: {reason}; evidence: {evidence}.",
    ),
]


def upgrade() -> None:
    create_platform_tables()
    op.create_table(
        "customers",
        sa.Column("customer_id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text),
        sa.Column("mobile", sa.Text),
        sa.Column("wechat_openid", sa.Text),
        sa.Column("language", sa.Text, nullable=False),
        sa.Column("preferred_channel", sa.Text, nullable=False),
        sa.Column("service_consent", sa.Boolean, nullable=False),
        sa.Column("marketing_consent", sa.Boolean, nullable=False),
        sa.Column("quiet_start", sa.Text, nullable=False),
        sa.Column("quiet_end", sa.Text, nullable=False),
        sa.Column("tier", sa.Text),
        sa.Column("maintenance_team", sa.Text),
        sa.Column("relationship_manager_id", sa.Text),
        sa.Column("branch_id", sa.Text),
        sa.Column("as_of", TS, nullable=False),
    )
    op.create_table(
        "staff",
        sa.Column("employee_id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("mobile", sa.Text),
        sa.Column("wechat_openid", sa.Text),
        sa.Column("language", sa.Text, nullable=False),
        sa.Column("preferred_channel", sa.Text, nullable=False),
        sa.Column("department", sa.Text),
        sa.Column("branch_id", sa.Text),
        sa.Column("roles", ARRAY(sa.Text), nullable=False, server_default=sa.text("'{}'")),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("staff_roles", "staff", ["roles"], postgresql_using="gin")
    op.create_table(
        "duty_contacts",
        sa.Column("department", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("employee_id", sa.Text),
        sa.Column("mobile", sa.Text),
        sa.Column("wechat_openid", sa.Text),
        sa.Column("language", sa.Text, nullable=False),
        sa.Column("preferred_channel", sa.Text, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    templates = op.create_table(
        "templates",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("category", sa.Text, nullable=False),
        sa.Column("bodies", JSONB, nullable=False),
        sa.Column("wechat_template_id", sa.Text, nullable=False),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_by", sa.Text),
        sa.CheckConstraint("category IN ('service', 'marketing')", name="templates_category"),
    )
    op.bulk_insert(
        templates,
        [
            {
                "key": key,
                "category": category,
                "bodies": {"zh-CN": zh, "en": en},
                "wechat_template_id": f"tpl_{key}",
                "updated_by": "migration 0001",
            }
            for key, category, zh, en in TEMPLATES
        ],
    )
    op.create_table(
        "notifications",
        sa.Column("notification_id", sa.Text, primary_key=True),
        sa.Column("source_event_id", sa.Text, nullable=False),
        sa.Column("source_event_type", sa.Text, nullable=False),
        sa.Column("recipient_kind", sa.Text, nullable=False),
        sa.Column("recipient_id", sa.Text, nullable=False),
        sa.Column("template", sa.Text, nullable=False),
        sa.Column("customer_id", sa.Text, nullable=False),
        sa.Column("category", sa.Text, nullable=False),
        sa.Column("urgent", sa.Boolean, nullable=False),
        sa.Column("variables", JSONB, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("channel", sa.Text),
        sa.Column("address", sa.Text),
        sa.Column("language", sa.Text),
        sa.Column("body", sa.Text),
        sa.Column(
            "exhausted_channels", ARRAY(sa.Text), nullable=False, server_default=sa.text("'{}'")
        ),
        sa.Column("channel_attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("timer_seq", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("deliver_after", TS),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("sent_at", TS),
        sa.UniqueConstraint(
            "source_event_id",
            "recipient_kind",
            "recipient_id",
            "template",
            name="notifications_one_per_event_recipient_template",
        ),
        sa.CheckConstraint(
            "status IN ('queued', 'sent', 'failed', 'suppressed')", name="notifications_status"
        ),
    )
    op.create_index(
        "notifications_recipient",
        "notifications",
        ["recipient_kind", "recipient_id", "created_at"],
    )
    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column(
            "notification_id",
            sa.Text,
            sa.ForeignKey("notifications.notification_id"),
            nullable=False,
        ),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("http_status", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=False),
    )
    op.create_index(
        "delivery_attempts_notification", "delivery_attempts", ["notification_id", "attempt"]
    )
    op.create_table(
        "provider_receipts",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column(
            "notification_id",
            sa.Text,
            sa.ForeignKey("notifications.notification_id"),
            nullable=False,
        ),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("provider_message_id", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("raw", JSONB, nullable=False),
        sa.Column("received_at", TS, nullable=False),
    )
    op.create_index("provider_receipts_notification", "provider_receipts", ["notification_id"])
    op.create_table(
        "daily_counts",
        sa.Column("customer_id", sa.Text, primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("sent", sa.Integer, nullable=False),
    )
    op.create_table(
        "sandbox_messages",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("notification_id", sa.Text, nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("address", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("delivered_at", TS, nullable=False),
    )
    op.create_index("sandbox_messages_address", "sandbox_messages", ["address"])


def downgrade() -> None:
    for table in (
        "sandbox_messages",
        "daily_counts",
        "provider_receipts",
        "delivery_attempts",
        "notifications",
        "templates",
        "duty_contacts",
        "staff",
        "customers",
    ):
        op.drop_table(table)
    drop_platform_tables()
