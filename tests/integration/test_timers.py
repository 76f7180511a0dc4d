"""Durable timers: exactly once across concurrent workers, and they survive a restart."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import pytest
from sqlalchemy import func, select, text

from shared.clock import DevClock
from shared.db import create_engine, session_factory
from shared.tables import timers
from shared.testing.waiting import eventually
from shared.timers import DueTimer, TimerCrew, TimerWorker, claim
from shared.unit_of_work import TimerMoves, Tx, UnitOfWork
from tests.integration.conftest import make_probe_schema
from tests.integration.probe import fired, record_fired

pytestmark = pytest.mark.integration


@pytest.fixture
async def timer_schema(infra):
    schema = infra.new_schema("timers")
    await make_probe_schema(infra, schema)
    engine = create_engine(infra.database_url, schema, application_name="test-timers")
    yield session_factory(engine)
    await engine.dispose()


def worker(sessions, clock, name: str) -> TimerWorker:
    return TimerWorker(
        service=name,
        uow=UnitOfWork(sessions, clock, "probe"),
        clock=clock,
        handlers={"probe": record_fired},
        batch_size=7,  # small batches so both workers claim many times
        poll_interval=0.05,
    )


async def count_fired(sessions) -> tuple[int, int]:
    async with sessions() as session:
        total = await session.scalar(select(func.count()).select_from(fired))
        distinct = await session.scalar(select(func.count(func.distinct(fired.c.key))))
    return int(total or 0), int(distinct or 0)


async def test_due_timers_fire_once_with_two_concurrent_workers(timer_schema):
    sessions = timer_schema
    clock = DevClock()
    uow = UnitOfWork(sessions, clock, "probe")
    async with uow() as tx:
        for n in range(300):
            await tx.schedule("probe", f"job-{n}", tx.now - timedelta(seconds=1))
    workers = [worker(sessions, clock, "a"), worker(sessions, clock, "b")]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        await eventually(lambda: count_fired(sessions), lambda n: n[0] >= 300, timeout=30)
        await asyncio.sleep(0.3)  # give a double-firing worker the chance to show itself
    finally:
        for w in workers:
            w.stop()
        await asyncio.gather(*tasks)
    assert await count_fired(sessions) == (300, 300)


async def test_timer_survives_a_restart_and_fires_when_due(timer_schema):
    sessions = timer_schema
    first_clock = DevClock()
    async with UnitOfWork(sessions, first_clock, "probe")() as tx:
        await tx.schedule("probe", "later", tx.now + timedelta(hours=6))
    first = worker(sessions, first_clock, "first")
    task = asyncio.create_task(first.run())
    await asyncio.sleep(0.2)
    first.stop()
    await task
    assert await count_fired(sessions) == (0, 0)  # not due yet

    # A new process: a new clock, moved past the deadline.
    second_clock = DevClock()
    second = worker(sessions, second_clock, "second")
    task = asyncio.create_task(second.run())
    try:
        second_clock.advance(6 * 3600 + 1)
        await eventually(lambda: count_fired(sessions), lambda n: n[0] >= 1)
    finally:
        second.stop()
        await task
    assert await count_fired(sessions) == (1, 1)


async def test_cancelled_timer_does_not_fire(timer_schema):
    sessions = timer_schema
    clock = DevClock()
    uow = UnitOfWork(sessions, clock, "probe")
    due = clock.now() - timedelta(seconds=1)
    async with uow() as tx:
        keys = ["cancel-me", "keep-me", "cancel-us-1", "cancel-us-2"]
        await tx.schedule_many("probe", [(key, due, None) for key in keys])
        await tx.schedule("other", "cancel-us-1", due)
    async with uow() as tx:
        await tx.cancel("probe", "cancel-me")
        await tx.cancel_many("probe", ["cancel-us-1", "cancel-us-2", "never-scheduled"])
    w = worker(sessions, clock, "c")
    assert await w.fire_due() == 1
    assert await count_fired(sessions) == (1, 1)
    async with sessions() as session:  # a cancel touches only its own kind
        other = await session.scalar(select(func.count()).where(timers.c.kind == "other"))
    assert other == 1


async def test_a_fired_timer_is_deleted_and_its_key_may_be_scheduled_again(timer_schema):
    sessions = timer_schema
    clock = DevClock()
    uow = UnitOfWork(sessions, clock, "probe")
    async with uow() as tx:
        await tx.schedule_many("probe", [(k, tx.now, None) for k in ("a", "b")])
        await tx.schedule("probe", "later", tx.now + timedelta(hours=1))
    w = worker(sessions, clock, "d")
    assert await w.fire_due() == 2

    async def keys() -> set[str]:
        async with sessions() as session:
            return set((await session.scalars(select(timers.c.key))).all())

    assert await keys() == {"later"}  # the fired rows are gone, the pending one stays
    async with uow() as tx:
        await tx.schedule("probe", "a", tx.now)
    assert await w.fire_due() == 1
    assert await count_fired(sessions) == (3, 2)  # "a" twice, "b" once
    assert await keys() == {"later"}


async def test_new_timers_copied_in_fire_as_scheduled_ones_and_an_old_key_is_refused(
    timer_schema,
):
    sessions = timer_schema
    clock = DevClock()
    uow = UnitOfWork(sessions, clock, "probe")
    due = clock.now() - timedelta(seconds=1)
    async with uow() as tx:
        await tx.schedule("probe", "old", due + timedelta(days=1))
        await tx.schedule_new(
            "probe", [("new-1", due, {"n": 1}), ("new-2", due, None), ("new-1", due, {"n": 2})]
        )
        assert tx.scheduled == {
            ("probe", "old"): due + timedelta(days=1),
            ("probe", "new-1"): due,
            ("probe", "new-2"): due,
        }
    async with sessions() as session:
        rows = dict((await session.execute(select(timers.c.key, timers.c.payload))).all())
    assert rows == {"old": {}, "new-1": {"n": 2}, "new-2": {}}  # the last schedule of a key wins
    assert await worker(sessions, clock, "n").fire_due() == 2

    with pytest.raises(asyncpg.UniqueViolationError):  # the whole transaction is refused
        async with uow() as tx:
            await tx.schedule("probe", "kept-out", due)
            await tx.schedule_new("probe", [("old", due, None)])
    async with sessions() as session:
        keys = set((await session.scalars(select(timers.c.key))).all())
        moved = await session.scalar(select(timers.c.due_at).where(timers.c.key == "old"))
    assert keys == {"old"}  # new-1 and new-2 fired (deleted); nothing of the refused one
    assert moved == due + timedelta(days=1)


async def test_timer_moves_apply_the_last_move_of_each_key(timer_schema):
    sessions = timer_schema
    uow = UnitOfWork(sessions, DevClock(), "probe")
    async with uow() as tx:
        await tx.schedule("probe", "moved-away", tx.now)
        moves = TimerMoves("probe")
        moves.schedule("scheduled-then-cancelled", tx.now)
        moves.cancel("scheduled-then-cancelled")
        moves.cancel("moved-away")
        moves.cancel("cancelled-then-scheduled")
        moves.schedule("cancelled-then-scheduled", tx.now, {"n": 1})
        moves.schedule("scheduled-twice", tx.now, {"n": 1})
        moves.schedule("scheduled-twice", tx.now + timedelta(hours=1), {"n": 2})
        await moves.apply(tx)
    async with sessions() as session:
        pending = dict((await session.execute(select(timers.c.key, timers.c.payload))).all())
    assert pending == {"cancelled-then-scheduled": {"n": 1}, "scheduled-twice": {"n": 2}}


async def test_an_idle_worker_sleeps_until_the_next_timer_not_a_whole_poll(timer_schema):
    """Polling only every ten minutes, a worker still fires on time: a timer pending in
    Postgres when it looked, and one its own process schedules while it sleeps."""
    sessions = timer_schema
    clock = DevClock()
    async with UnitOfWork(sessions, clock, "probe")() as tx:  # another process's schedule
        await tx.schedule("probe", "pending", tx.now + timedelta(seconds=1))
    uow = UnitOfWork(sessions, clock, "probe")
    w = TimerWorker(
        service="sleepy", uow=uow, clock=clock, handlers={"probe": record_fired}, poll_interval=600
    )
    task = asyncio.create_task(w.run())
    try:
        await eventually(lambda: count_fired(sessions), lambda n: n[0] >= 1, timeout=10)
        await asyncio.sleep(0.2)  # asleep again, with nothing pending
        async with uow() as tx:
            await tx.schedule("probe", "scheduled-here", tx.now + timedelta(seconds=0.5))
        await eventually(lambda: count_fired(sessions), lambda n: n[0] >= 2, timeout=10)
    finally:
        w.stop()
        await task
    assert await count_fired(sessions) == (2, 2)


async def test_a_timer_committed_while_the_worker_looks_fires_without_a_wait(
    timer_schema, monkeypatch
):
    """A timer this process commits while the worker's claim runs (and finds nothing) ends
    the worker's next sleep at once: neither the poll nor the retry for timers held by
    another worker (both set to ten minutes here) holds it back."""
    monkeypatch.setattr("shared.timers._HELD_ELSEWHERE", timedelta(minutes=10))
    sessions = timer_schema
    clock = DevClock()
    uow = UnitOfWork(sessions, clock, "probe")
    w = TimerWorker(
        service="busy", uow=uow, clock=clock, handlers={"probe": record_fired}, poll_interval=600
    )
    claim_look = w._claim
    committed: list[str] = []

    async def claim_then_commit_one(tx, **kwargs):
        look = await claim_look(tx, **kwargs)
        if not look.due and not committed:  # as a consumer of this process would, meanwhile
            async with uow() as other:
                await other.schedule("probe", "while-looking", other.now)
            committed.append("while-looking")
        return look

    monkeypatch.setattr(w, "_claim", claim_then_commit_one)
    task = asyncio.create_task(w.run())
    try:
        await eventually(lambda: count_fired(sessions), lambda n: n[0] >= 1, timeout=10)
    finally:
        w.stop()
        await task
    assert committed and await count_fired(sessions) == (1, 1)


async def test_a_late_notice_of_a_timer_the_last_claim_took_calls_for_no_look(
    timer_schema, monkeypatch
):
    """The task that commits a timer tells the workers once its commit has returned; the
    worker's claim may have run in between and taken the timer. That notice calls for no
    look (in the notifications service such looks were up to half of all, each finding
    nothing); a notice of a timer it has not taken does."""
    sessions = timer_schema
    clock = DevClock()
    w = TimerWorker(
        service="late",
        uow=UnitOfWork(sessions, clock, "probe"),
        clock=clock,
        handlers={"probe": record_fired},
        poll_interval=600,
    )
    claims = 0
    claim = w._claim

    async def counted(tx, **kwargs):
        nonlocal claims
        claims += 1
        return await claim(tx, **kwargs)

    async def looks() -> int:
        return claims

    monkeypatch.setattr(w, "_claim", counted)
    async with UnitOfWork(sessions, clock, "probe")() as tx:  # tells no worker yet
        await tx.schedule("probe", "told-late", tx.now)
    notice = dict(tx.scheduled)
    task = asyncio.create_task(w.run())
    try:
        await eventually(lambda: count_fired(sessions), lambda n: n[0] >= 1, timeout=10)
        await asyncio.sleep(0.2)  # asleep: nothing pending, the next poll in ten minutes
        looked = claims
        w.crew(notice)  # the commit's notice, after the claim took its timer
        await asyncio.sleep(0.3)
        assert claims == looked
        w.crew({("probe", "not-taken"): clock.now()})
        await eventually(looks, lambda n: n > looked, timeout=5)
    finally:
        w.stop()
        await task


async def test_a_commit_wakes_one_worker_of_the_process_not_all(timer_schema, monkeypatch):
    """Two workers of one process, both asleep: a timer the process commits wakes one of
    them; the other, woken too, would only find it locked by the first."""
    sessions = timer_schema
    clock = DevClock()
    uow = UnitOfWork(sessions, clock, "probe")
    crew = TimerCrew(uow)
    workers = [
        TimerWorker(
            service=f"crew-{n}",
            uow=uow,
            clock=clock,
            handlers={"probe": record_fired},
            poll_interval=600,
            crew=crew,
        )
        for n in range(2)
    ]
    claims = [0, 0]
    for n, w in enumerate(workers):

        async def counted(tx, _n=n, _claim=w._claim, **kwargs):
            claims[_n] += 1
            return await _claim(tx, **kwargs)

        monkeypatch.setattr(w, "_claim", counted)
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        await asyncio.sleep(0.3)  # each looked once, asleep
        assert claims == [1, 1]
        async with uow() as tx:
            await tx.schedule("probe", "one-look", tx.now)
        await eventually(lambda: count_fired(sessions), lambda n: n[0] >= 1, timeout=10)
        await asyncio.sleep(0.3)
    finally:
        for w in workers:
            w.stop()
        await asyncio.gather(*tasks)
    assert sum(claims) == 3, claims


async def test_a_worker_woken_as_the_database_goes_down_backs_off(timer_schema):
    """A wake-up for a timer committed just before Postgres went away wakes one look, not
    every retry after it: the worker backs off between attempts."""
    attempts_while_down = 0

    class Sessions:
        down = False

        def __call__(self):
            nonlocal attempts_while_down
            if self.down:
                attempts_while_down += 1
                raise ConnectionRefusedError("the database is down")
            return timer_schema()

    sessions = Sessions()
    clock = DevClock()
    uow = UnitOfWork(sessions, clock, "probe")
    w = TimerWorker(
        service="outage", uow=uow, clock=clock, handlers={"probe": record_fired}, poll_interval=600
    )
    task = asyncio.create_task(w.run())
    try:
        await asyncio.sleep(0.3)  # looked once, asleep
        async with uow() as tx:
            await tx.schedule("probe", "before-the-outage", tx.now)
        sessions.down = True  # before the woken worker runs
        await asyncio.sleep(0.5)
    finally:
        w.stop()
        await task
    assert 1 <= attempts_while_down < 20  # a backoff of 0.2 s, doubling; without it, thousands


async def test_timers_scheduled_at_commit_are_written_there_and_a_later_move_wins(timer_schema):
    sessions = timer_schema
    uow = UnitOfWork(sessions, DevClock(), "probe")
    async with uow() as tx:
        await tx.schedule("probe", "existing", tx.now)
    async with uow() as tx:
        later = tx.now + timedelta(hours=1)
        keys = ("existing", "new", "then-cancelled", "then-scheduled")
        tx.schedule_at_commit("probe", [(k, later, {"at": "commit"}) for k in keys])
        await tx.cancel_many("probe", ["then-cancelled"])
        await tx.schedule("probe", "then-scheduled", tx.now, {"at": "once"})
        before_commit = set((await tx.session.scalars(select(timers.c.key))).all())
    async with sessions() as session:
        rows = (
            await session.execute(select(timers.c.key, timers.c.due_at, timers.c.payload))
        ).all()
    assert before_commit == {"existing", "then-scheduled"}
    assert {key: (due_at == later, payload) for key, due_at, payload in rows} == {
        "existing": (True, {"at": "commit"}),
        "new": (True, {"at": "commit"}),
        "then-scheduled": (False, {"at": "once"}),
    }


@pytest.mark.parametrize("at_commit", [False, True])
async def test_a_handler_may_schedule_its_own_timer_again(timer_schema, at_commit):
    """A recurring job reschedules the key it fires for; the worker's delete of the fired
    timers, written after the handlers, leaves that timer pending at its new time (a fired
    mark once took it too, so the job never ran again). Scheduled at commit, the move is
    written in one statement with that delete."""
    sessions = timer_schema
    clock = DevClock()
    runs: list[str] = []

    async def again_in_an_hour(tx: Tx, due: list[DueTimer]) -> None:
        for timer in due:
            runs.append(timer.key)
            if len(runs) < 3:
                later = tx.now + timedelta(hours=1)
                if at_commit:
                    tx.schedule_at_commit(timer.kind, [(timer.key, later, None)])
                else:
                    await tx.schedule(timer.kind, timer.key, later)

    uow = UnitOfWork(sessions, clock, "probe")
    async with uow() as tx:
        await tx.schedule("recurring", "hourly", tx.now)
    w = TimerWorker(service="t", uow=uow, clock=clock, handlers={"recurring": again_in_an_hour})
    assert await w.fire_due() == 1
    assert await w.fire_due() == 0  # moved an hour on, not fired again at once
    clock.advance(3600)
    assert await w.fire_due() == 1
    clock.advance(3600)
    assert await w.fire_due() == 1
    clock.advance(3600)
    assert await w.fire_due() == 0  # the third run did not reschedule
    assert runs == ["hourly"] * 3


async def test_a_failing_timer_is_retried_later_and_the_rest_of_its_batch_fires(timer_schema):
    """One timer's handler fails for good: its batch is fired one by one, the others fire,
    and the failing one is not deleted as fired but pushed back with its error recorded."""
    sessions = timer_schema
    clock = DevClock()

    async def fails_on_bad(tx: Tx, due: list[DueTimer]) -> None:
        if any(t.key == "bad" for t in due):
            raise RuntimeError("cannot handle bad")
        await record_fired(tx, due)

    uow = UnitOfWork(sessions, clock, "probe")
    async with uow() as tx:
        await tx.schedule_many("probe", [(k, tx.now, None) for k in ("a", "bad", "c")])
    w = TimerWorker(service="t", uow=uow, clock=clock, handlers={"probe": fails_on_bad})
    before = clock.now()
    assert await w.fire_due() == 2
    assert await count_fired(sessions) == (2, 2)
    async with sessions() as session:
        bad = (
            await session.execute(
                select(
                    timers.c.fired_at, timers.c.attempts, timers.c.last_error, timers.c.due_at
                ).where(timers.c.key == "bad")
            )
        ).one()
    assert bad.fired_at is None and bad.attempts == 1
    assert "cannot handle bad" in bad.last_error
    assert before + timedelta(seconds=60) <= bad.due_at <= clock.now() + timedelta(seconds=60)


_PENDING_ENTRIES_READ = text("SELECT pg_stat_get_xact_tuples_returned('timers_pending'::regclass)")


async def test_an_idle_workers_look_ahead_reads_one_entry_of_a_table_never_analyzed(
    timer_schema,
):
    """An empty claim learns when the next timer falls due. On a timers table not analyzed
    since its 20,000 pending timers arrived, the freely planned look read every one of
    them; in index order (the claim plans without bitmap scans) it reads the first."""
    sessions = timer_schema
    async with sessions() as session, session.begin():
        await session.execute(text("ALTER TABLE timers SET (autovacuum_enabled = off)"))
        await session.execute(
            text(
                "INSERT INTO timers (kind, key, due_at) SELECT 'probe', 'later-' || n,"
                " now() + interval '1 hour' + n * interval '1 second'"
                " FROM generate_series(1, 20000) n"
            )
        )
        first = await session.scalar(select(func.min(timers.c.due_at)))
    async with sessions() as session, session.begin():
        before = await session.scalar(_PENDING_ENTRIES_READ)
        look = await claim(session, ["probe", "other"], await session.scalar(func.now()), 500)
        read = await session.scalar(_PENDING_ENTRIES_READ) - before
    assert look.due == [] and look.next_due == first
    assert read <= 2, f"{read} entries of timers_pending read for the first"


async def test_a_claim_takes_due_timers_oldest_first_and_learns_when_the_next_falls_due(
    timer_schema,
):
    """One statement claims and looks ahead: a partial claim says when the first pending
    timer it did not take falls due, a timer another worker holds included (due already,
    it tells the worker to look again soon); a full claim does not look."""
    sessions = timer_schema
    async with sessions() as session, session.begin():
        now = await session.scalar(func.now())
        await session.execute(
            timers.insert(),
            [
                {"kind": "probe", "key": key, "due_at": now + timedelta(seconds=offset)}
                for key, offset in (("b", -1), ("a", -2), ("later", 3600), ("other", -3))
            ],
        )
        await session.execute(
            timers.update().where(timers.c.key == "other").values(kind="not-mine")
        )
    due_at = {"a": now - timedelta(seconds=2), "b": now - timedelta(seconds=1)}

    async with sessions() as session, session.begin():
        look = await claim(session, ["probe"], now, 5)
        assert [t.key for t in look.due] == ["a", "b"]
        assert [t.due_at for t in look.due] == [due_at["a"], due_at["b"]]
        assert look.next_due == now + timedelta(seconds=3600)

        full = await claim(session, ["probe"], now, 2)  # its own locks do not skip
        assert [t.key for t in full.due] == ["a", "b"] and full.next_due is None

    async with sessions() as holder, holder.begin():
        held = await claim(holder, ["probe"], now, 1)
        assert [t.key for t in held.due] == ["a"]
        async with sessions() as session, session.begin():
            look = await claim(session, ["probe"], now, 5)
        assert [t.key for t in look.due] == ["b"]
        assert look.next_due == due_at["a"]  # held elsewhere, due already
