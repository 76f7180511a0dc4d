"""schemathesis against each service's own OpenAPI document, in-process: requests generated
from every operation's schema (with an admin, a staff and a customer token)
never get a 5xx.

Cases are generated with hypothesis (bounded: `EXAMPLES` per operation, no shrinking) and
sent through the running service's ASGI client in the test's event loop — the services'
database pools live on that loop, so schemathesis's own threaded ASGI client cannot be used.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from shared.testing.services import RunningService

pytestmark = pytest.mark.integration
EXAMPLES = 8  # per operation and role
ROLES = {
    "admin": RunningService.token("admin", employee_id="E900"),
    "staff": RunningService.token("staff", employee_id="E901"),
    "customer": RunningService.token("customer", customer_id="C-fuzz-self"),
}


def _cases(operation: Any) -> list[Any]:
    """Up to EXAMPLES generated cases of one operation (explicit examples first)."""
    cases: list[Any] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(operation.as_strategy())
    def collect(case: Any) -> None:
        cases.append(case)

    collect()
    return cases


def _request(case: Any, headers: dict[str, str]) -> dict[str, Any]:
    """schemathesis' requests-style arguments as httpx arguments."""
    kwargs = case.as_transport_kwargs(base_url="http://test", headers=headers)
    kwargs.pop("cookies", None)
    if "data" in kwargs and not isinstance(kwargs["data"], dict):
        kwargs["content"] = kwargs.pop("data")
    return kwargs


@pytest.mark.parametrize("service", ["tiering", "complaints", "profile", "notifications"])
async def test_generated_requests_never_get_a_server_error(fleet, service):
    svc = fleet[service]
    schema = schemathesis.openapi.from_dict((await svc.http.get("/openapi.json")).json())
    operations = [result.ok() for result in schema.get_all_operations()]
    statuses: Counter[int] = Counter()
    errors: list[str] = []
    for operation in operations:
        for role, headers in ROLES.items():
            for case in _cases(operation):
                request = _request(case, headers)
                described = f"{role} {case.as_curl_command()}"
                try:
                    response = await svc.http.request(**request, timeout=30)
                except Exception as exc:  # the ASGI transport re-raises the app's exception
                    errors.append(f"{described}\n  raised {exc!r}"[:1500])
                    continue
                statuses[response.status_code] += 1
                if response.status_code >= 500:
                    errors.append(f"{described}\n  → {response.status_code} {response.text[:300]}")
    print(
        f"\nopenapi fuzz {service}: {len(operations)} operations, "
        f"{sum(statuses.values())} requests, statuses {dict(sorted(statuses.items()))}, "
        f"{len(errors)} server errors"
    )
    assert not errors, "\n".join(errors[:10])
