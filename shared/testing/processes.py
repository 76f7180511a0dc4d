"""A service as a real OS process (`python -m services.<name>`), for crash and log tests."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from shared.devstack.broker import free_port


class ServiceProcess:
    """One service process; stdout+stderr go to `log_file`; killable with any signal."""

    def __init__(self, name: str, env: dict[str, str], log_file: Path) -> None:
        self.name = name
        self.port = free_port()
        self.env = os.environ | env | {f"{name.upper()}_PORT": str(self.port)}
        self.log_file = log_file
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServiceProcess:
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.name}"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Until /readyz answers 200 (migrated, broker connected, consumers assigned)."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=self.url, timeout=1) as client:
            while time.monotonic() < deadline:
                if self._process is not None and self._process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self._process.returncode}")
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready after {timeout}s")

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flushing, no commit of anything in flight."""
        self.signal(signal.SIGKILL)

    def signal(self, sig: signal.Signals) -> None:
        if self._process is not None:
            self._process.send_signal(sig)
            self._process.wait(timeout=30)
            self._process = None

    def stop(self) -> int | None:
        """SIGTERM and wait (SIGKILL after 15 s); returns the exit code."""
        if self._process is None:
            return None
        self._process.terminate()
        try:
            code = self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            code = self._process.wait()
        self._process = None
        return code

    def wait_exit(self, timeout: float = 30.0) -> int:
        """For a process expected to refuse to start."""
        assert self._process is not None
        code = self._process.wait(timeout=timeout)
        self._process = None
        return code
