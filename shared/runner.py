"""Run a service process: JSON logging, settings from the environment, uvicorn."""

from __future__ import annotations

import uvicorn

from shared.logs import configure_logging
from shared.service import ServiceSpec
from shared.web.app import create_app


def serve(spec: ServiceSpec) -> None:
    """Start the service's API and background loops on its port (blocks until signalled)."""
    settings = spec.settings()
    configure_logging(spec.name, settings.steward_log_level)
    app = create_app(spec, settings)
    uvicorn.run(app, host="0.0.0.0", port=settings.port, log_config=None, access_log=False)
