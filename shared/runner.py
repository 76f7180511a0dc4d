"""Run a service process: JSON logging, settings from the environment, uvicorn."""

from __future__ import annotations

import gc

import uvicorn

from shared.logs import configure_logging
from shared.service import ServiceSpec
from shared.web.app import create_app


def serve(spec: ServiceSpec) -> None:
    """Start the service's API and background loops on its port (blocks until signalled)."""
    settings = spec.settings()
    configure_logging(spec.name, settings.steward_log_level)
    app = create_app(spec, settings)
    # What start-up created (modules, classes, routes) lives as long as the process: out of
    # the collector's way, a full collection no longer walks it again and again.
    gc.collect()
    gc.freeze()
    uvicorn.run(app, host="0.0.0.0", port=settings.port, log_config=None, access_log=False)
