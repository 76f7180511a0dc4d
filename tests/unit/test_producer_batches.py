"""A relay batch goes out as one record batch per partition, so in one produce request."""

from __future__ import annotations

import pytest

from shared.messaging.producer import Producer

pytestmark = pytest.mark.unit


async def test_a_partitions_share_of_a_relay_batch_fits_one_record_batch() -> None:
    # 1,000 outbox rows of ~1 KB over 3 topics of 12 partitions: ~28 a partition. Give
    # it 100: with aiokafka's default of 16 KB the 17th did not fit and waited for the
    # first batch to be sent before it could be queued.
    producer = Producer("127.0.0.1:9", idempotence=False, client_id="test")
    try:
        batch = producer._kafka.create_batch()
        value = b"x" * 1000
        appended = [
            batch.append(key=b"C%05d" % n, value=value, timestamp=None, headers=[("h", b"v")])
            for n in range(100)
        ]
    finally:
        await producer.stop()
    assert all(meta is not None for meta in appended)
