"""One pending SLA timer per complaint clock, moved on from level to level as each fires.

Until now filing scheduled a timer per clock and level (`<complaint>:<clock>:<level>:<gen>`):
six rows a complaint, most of them cancelled unfired when the complaint was answered in
time. Now a clock holds one timer (`<complaint>:<clock>:<gen>`, the level in its payload).
Each clock's earliest pending level becomes that timer; its later levels' rows go, as the
timer is moved on to them when it fires. Fired rows stay as they are: records, purged
after the retention.

The downgrade gives the pending timer back its per-level key. The levels after it are not
written back (their times come from the service's policy): under the older version those
clocks would stop at the level now pending.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
WITH per_level AS (
    SELECT id, due_at, split_part(key, ':', 1) AS complaint_id,
           split_part(key, ':', 2) AS clock, split_part(key, ':', 4) AS generation
    FROM timers
    WHERE kind = 'complaints.sla' AND fired_at IS NULL
      AND array_length(string_to_array(key, ':'), 1) = 4
), earliest AS (
    SELECT DISTINCT ON (complaint_id, clock, generation) id, complaint_id, clock, generation
    FROM per_level
    ORDER BY complaint_id, clock, generation, due_at, id
), later AS (
    DELETE FROM timers
    WHERE id IN (SELECT id FROM per_level EXCEPT SELECT id FROM earliest)
)
UPDATE timers t
SET key = e.complaint_id || ':' || e.clock || ':' || e.generation
FROM earliest e
WHERE t.id = e.id
""")


def downgrade() -> None:
    op.execute("""
UPDATE timers
SET key = split_part(key, ':', 1) || ':' || split_part(key, ':', 2) || ':'
          || (payload ->> 'level') || ':' || split_part(key, ':', 3)
WHERE kind = 'complaints.sla' AND fired_at IS NULL
  AND array_length(string_to_array(key, ':'), 1) = 3
""")
