"""Helpers shared by the complaints integration tests."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from shared.contracts.topics import COMPLAINT_FILED
from shared.testing.kafka import make_event
from shared.testing.services import RunningService

STAFF = RunningService.token("staff", employee_id="E100", department="customer_service")
OPS = RunningService.token("ops")


def customer_id() -> str:
    return f"C-{uuid.uuid4().hex[:10]}"


def customer(cid: str) -> dict[str, str]:
    return RunningService.token("customer", customer_id=cid)


async def file_complaint(svc: RunningService, **fields: Any) -> dict[str, Any]:
    """File a complaint over the API as staff; `fields` override the body's defaults."""
    body = {
        "customer_id": customer_id(),
        "channel": "hotline",
        "category": "processing_delay",
        "description": "my transfer has been pending for a week",
    } | fields
    response = await svc.http.post("/complaints", json=body, headers=STAFF)
    assert response.status_code == 201, response.text
    return dict(response.json())


def filed_event(cid: str, received_at: datetime, **data: Any) -> dict[str, Any]:
    """A ComplaintFiled envelope; `data` overrides the defaults."""
    return make_event(
        COMPLAINT_FILED,
        {
            "complaint_ref": f"CH-{uuid.uuid4().hex[:12]}",
            "customer_id": cid,
            "channel": "hotline",
            "category": "fees",
            "description": "charged twice for the annual card fee",
            "received_by": "E200",
            "branch_id": "B001",
            "received_at": received_at.isoformat(),
        }
        | data,
    )
