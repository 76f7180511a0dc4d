"""`STEWARD_ENV=prod` refuses the dev JWT secret and serves no `/admin/clock`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from shared.clock import DevClock
from shared.settings import DEV_JWT_SECRET
from shared.testing.processes import ServiceProcess
from shared.testing.services import RunningService, running_service, service_settings
from shared.web.app import create_app
from tests.security.conftest import SPECS

pytestmark = pytest.mark.integration

PROD_SECRET = "a-real-production-secret-0123456789abcdef"


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_prod_settings_refuse_the_dev_secret(infra, spec):
    with pytest.raises(ValidationError, match="refuses the dev JWT secret"):
        service_settings(spec, infra, steward_env="prod", steward_jwt_secret=DEV_JWT_SECRET)


async def test_a_prod_process_with_the_dev_secret_exits_at_once(infra, tmp_path: Path):
    processes = [
        ServiceProcess(
            spec.name,
            {
                "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
                "DATABASE_URL": infra.database_url,
                "STEWARD_ENV": "prod",
                "STEWARD_JWT_SECRET": DEV_JWT_SECRET,
                "SCHEMA_NAME": infra.new_schema(f"{spec.name}_prodcheck"),
            },
            tmp_path / f"{spec.name}.log",
        ).start()
        for spec in SPECS
    ]
    codes = await asyncio.gather(*(asyncio.to_thread(p.wait_exit, 60) for p in processes))
    assert all(code != 0 for code in codes), codes
    for p in processes:
        assert "refuses the dev JWT secret" in p.log_file.read_text(), p.name


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
async def test_prod_has_no_admin_clock(infra, spec):
    settings = service_settings(
        spec,
        infra,
        steward_env="prod",
        steward_jwt_secret=PROD_SECRET,
        notifications_allow_sandbox=True,  # a staging system (prod refuses it otherwise)
    )
    app = create_app(spec, settings)
    assert "/admin/clock" not in app.openapi()["paths"]
    dev = create_app(spec, service_settings(spec, infra))
    assert "/admin/clock" in dev.openapi()["paths"]  # the control: dev mode has it
    admin = RunningService.token("admin")  # signed with the test secret: must not matter
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://prod") as client:
        response = await client.post("/admin/clock", json={"advance_seconds": 3600}, headers=admin)
    assert response.status_code == 404


async def test_a_running_prod_service_keeps_real_time(infra):
    spec = SPECS[0]
    settings = service_settings(spec, infra, steward_env="prod", steward_jwt_secret=PROD_SECRET)
    async with running_service(spec, settings, wait_assigned=False) as svc:
        assert not isinstance(svc.runtime.clock, DevClock)
        response = await svc.http.post("/admin/clock", json={"advance_seconds": 60})
        assert response.status_code == 404
