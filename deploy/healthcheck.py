"""Container health check: GET /healthz (or the path given) on this service's port.

Standard library only, so the image needs no curl. The service comes from STEWARD_SERVICE,
the port from <SERVICE>_PORT or the service's default port (kept equal to shared/cli.py
PORTS by tests/deploy). Exit 0 when the endpoint answers 200, 1 otherwise.
"""

import os
import sys
import urllib.error
import urllib.request

DEFAULT_PORTS = {"tiering": 8001, "complaints": 8002, "notifications": 8003, "profile": 8004}


def main() -> int:
    service = os.environ.get("STEWARD_SERVICE", "tiering")
    port = os.environ.get(f"{service.upper()}_PORT") or DEFAULT_PORTS[service]
    path = sys.argv[1] if len(sys.argv) > 1 else "/healthz"
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{service} {path}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
