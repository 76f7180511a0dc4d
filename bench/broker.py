"""How the embedded broker's cost grows with the record batches a partition holds, and how
its latency follows the consumers' fetch wait.

python -m bench.broker                       # 0, 5,000 and 10,000 stored one-record batches
python -m bench.broker 0 20000               # chosen sizes
python -m bench.broker 0 --wait 20 50 200    # chosen fetch waits (ms; the services' default
                                             # CONSUMER_FETCH_MAX_WAIT_MS otherwise)
python -m bench.broker 10000 --partitions 12 # the batches and the stream spread over twelve

For each size and wait: an empty broker, a topic (one partition unless told) filled with that
many one-record batches (one produce request each, as a producer with linger 0 sends a steady
stream), then 1,000 messages at 500/s tailed by a consumer with that fetch wait. Prints the
broker's CPU (share of one core) and the consumer's latency. The benchmark runs each section
on an empty broker because of what this shows.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.kit import percentile
from shared.devstack.broker import EmbeddedBroker, free_port
from shared.devstack.topics import TopicDefinition, create_topics
from shared.settings import StewardSettings

TOPIC = "bench.broker-growth"
RATE = 500
MESSAGES = 1000


async def tail(
    bootstrap: str, producer: AIOKafkaProducer, wait: int, partitions: int
) -> list[float]:
    """Latencies (s) of MESSAGES sent at RATE/s to a consumer tailing the topic."""
    consumer = AIOKafkaConsumer(
        TOPIC, bootstrap_servers=bootstrap, auto_offset_reset="latest", fetch_max_wait_ms=wait
    )
    await consumer.start()
    try:
        while await consumer.getmany(timeout_ms=300):
            pass  # at the end of the topic
        latencies: list[float] = []

        async def receive() -> None:
            while len(latencies) < MESSAGES:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    latencies.extend(time.time() - float(r.value or b"0") for r in records)

        receiving = asyncio.create_task(receive())
        started = time.perf_counter()
        for n in range(MESSAGES):
            await asyncio.sleep(max(0.0, started + n / RATE - time.perf_counter()))
            await producer.send(TOPIC, f"{time.time():.6f}".encode(), partition=n % partitions)
        await receiving
        return latencies
    finally:
        await consumer.stop()


async def probe(stored: int, wait: int, partitions: int) -> None:
    with tempfile.TemporaryDirectory(prefix="steward-broker-probe-") as workdir:
        broker = EmbeddedBroker(free_port(), Path(workdir) / "broker.log")
        bootstrap = broker.start()
        try:
            await create_topics(bootstrap, [TopicDefinition(TOPIC, partitions, 1, 3_600_000)])
            producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
            await producer.start()
            try:
                for n in range(stored):  # one batch per request
                    await producer.send_and_wait(TOPIC, b"0", partition=n % partitions)
                assert broker.pid is not None
                process = psutil.Process(broker.pid)
                before, started = sum(process.cpu_times()[:2]), time.perf_counter()
                latencies = [s * 1000 for s in await tail(bootstrap, producer, wait, partitions)]
                cpu = (sum(process.cpu_times()[:2]) - before) / (time.perf_counter() - started)
            finally:
                await producer.stop()
        finally:
            broker.stop()
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    print(
        f"  {stored:>7,} stored batches in {partitions}, fetch wait {wait:>4} ms: "
        f"broker {100 * cpu:5.1f} % of a core, latency p50 {p50:5.1f} ms, p99 {p99:5.1f} ms",
        flush=True,
    )


def cli() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.broker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("sizes", nargs="*", type=int, default=[0, 5_000, 10_000])
    parser.add_argument(
        "--wait",
        nargs="+",
        type=int,
        default=[StewardSettings.model_fields["consumer_fetch_max_wait_ms"].default],
        help="consumer fetch waits to try, in ms",
    )
    parser.add_argument("--partitions", type=int, default=1, help="partitions of the topic")
    args = parser.parse_args()
    print(
        f"Embedded broker: tailing {MESSAGES:,} messages at {RATE}/s from {args.partitions} "
        "partition(s)"
    )
    for stored in args.sizes:
        for wait in args.wait:
            asyncio.run(probe(stored, wait, args.partitions))


if __name__ == "__main__":
    cli()
