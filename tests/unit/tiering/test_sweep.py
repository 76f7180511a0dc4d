"""A re-evaluation sweep's chunks: each chunk's timer key stays short."""

from __future__ import annotations

import pytest

from services.tiering.handlers import next_chunk_key

pytestmark = pytest.mark.unit


def test_a_chunks_key_is_the_sweeps_key_and_where_it_starts():
    key = "policy:7"
    for n in range(1, 1001):  # 1,000 chunks: a million customers
        key = next_chunk_key(key, f"C{n * 1000:09d}")
    assert key == "policy:7>C001000000"
    assert next_chunk_key("daily:2026-12-08", "C>1") == "daily:2026-12-08>C>1"
    assert next_chunk_key("daily:2026-12-08>C>1", "C>2") == "daily:2026-12-08>C>2"
