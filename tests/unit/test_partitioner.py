"""Keys land on the partition the Java client (and aiokafka's own partitioner) would pick."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from shared.messaging.producer import partition_for

pytestmark = pytest.mark.unit


@given(key=st.binary(max_size=64), count=st.integers(min_value=1, max_value=64))
def test_a_key_goes_where_the_default_partitioner_sends_it(key: bytes, count: int) -> None:
    partitions = list(range(count))
    assert partition_for(key, partitions, partitions) == DefaultPartitioner()(
        key, partitions, partitions
    )


def test_partitions_the_java_client_computes() -> None:
    # Outputs of the Java client's default partitioner over 1000 partitions (the
    # compatibility vectors kafka-python and aiokafka test their partitioner with).
    partitions = list(range(1000))
    keys = [b"", b"a", b"ab", b"abc", b"123456789", b"\x00 "]
    assert [partition_for(k, partitions, partitions) for k in keys] == [
        681,
        524,
        434,
        107,
        566,
        742,
    ]


def test_a_message_without_key_goes_to_an_available_partition() -> None:
    for _ in range(50):
        assert partition_for(None, [0, 1, 2, 3], [2, 3]) in (2, 3)
        assert partition_for(None, [0, 1, 2, 3], []) in (0, 1, 2, 3)
