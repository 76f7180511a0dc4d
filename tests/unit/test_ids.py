"""Ids: random version 4 UUIDs in their text form, never repeated, not shared with a fork."""

from __future__ import annotations

import os
import re
import uuid

import pytest

from shared.ids import new_hex, new_id, new_uuid

pytestmark = pytest.mark.unit


def test_ids_are_version_4_uuids_in_canonical_text():
    for _ in range(5000):  # crosses many pooled reads
        text = new_id()
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed) == text


def test_ids_do_not_repeat():
    ids = [new_id() for _ in range(20000)]
    assert len(set(ids)) == len(ids)


def test_new_uuid_is_a_version_4_uuid():
    assert new_uuid().version == 4


def test_a_forked_child_draws_other_ids_than_its_parent():
    new_id()  # the pool holds ids the parent has still to hand out
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, new_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child_id = os.read(read, 64).decode()
    os.close(read)
    assert child_id != new_id()


def test_hex_ids_are_32_hex_digits_and_do_not_repeat():
    ids = [new_hex() for _ in range(20000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)
