"""Run a service process: JSON logging, settings from the environment, uvicorn."""

from __future__ import annotations

import gc

import uvicorn

from shared.logs import configure_logging
from shared.service import ServiceSpec
from shared.web.app import create_app

# A young collection after every 20,000 new container objects, not 700. A batch of 1,000
# events keeps tens of thousands of objects alive while it is processed: at 700 the
# collector walked them again and again and pushed them into the older generations, whose
# collections walked them once more. Time spent collecting, two alternating pairs of
# `bench.run --only tiering --only complaints`: one tiering process through 200,000
# postings 1.87 / 1.79 s at 700, 0.94 / 1.19 s at 20,000 (of 12 to 13 s of CPU); one
# complaints process through its POSTs and 100,000 breaches 2.99 / 3.66 s, 0.81 / 0.95 s.
_GC_THRESHOLDS = (20_000, 10, 10)


def serve(spec: ServiceSpec) -> None:
    """Start the service's API and background loops on its port (blocks until signalled)."""
    settings = spec.settings()
    configure_logging(spec.name, settings.steward_log_level)
    app = create_app(spec, settings)
    # What start-up created (modules, classes, routes) lives as long as the process: out of
    # the collector's way, a full collection no longer walks it again and again.
    gc.collect()
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLDS)
    host, port = settings.listen_host, settings.port
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)
