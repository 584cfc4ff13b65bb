"""A real PostgreSQL server on a free loopback port, in a temporary directory, started and
stopped by the tests with Debian's binaries (the ``postgresql`` package; scripts/test
installs it).

PostgreSQL refuses to run as root: as root, the cluster is made and run by the
``postgres`` system user the package creates (through ``runuser``).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile

import psycopg
import pytest

from tests.redis_server import free_port

#: The database the tests' stores use; the server's superuser owns it.
DATABASE = "guard_test"


def postgres_binaries() -> str:
    """The directory of the newest installed PostgreSQL's ``initdb`` and ``pg_ctl``;
    skips the test locally, fails it in CI, when there is none."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(path.split("/")[4]) if path.split("/")[4].isdigit() else 0,
    )
    if not found:
        message = "PostgreSQL is not installed (scripts/test installs Debian's postgresql)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return os.path.dirname(found[-1])


class PostgresServer:
    """One PostgreSQL cluster: loopback only, durability off (tests need none), trust
    authentication on its own socket and port; stop and start it again on the same port
    to simulate an outage."""

    def __init__(self) -> None:
        self.bin = postgres_binaries()
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="guard-postgres-")
        self.data = os.path.join(self.dir, "data")
        self.running = False
        if os.getuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8")

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the tests' database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def conninfo(self, database: str = DATABASE) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=300"
        )
        log = os.path.join(self.dir, "server.log")
        self._run("pg_ctl", "-D", self.data, "-l", log, "-o", options, "-w", "-t", "30", "start")
        self.running = True
        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
            if exists.fetchone() is None:
                conn.execute(f"CREATE DATABASE {DATABASE}")

    def stop(self) -> None:
        """Stop at once, cutting every client off (``fast``), as an outage does."""
        if self.running:
            self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")
            self.running = False

    def reset(self) -> None:
        """An empty database: every table of the previous test dropped."""
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")

    def close(self) -> None:
        """Stop the server for good and remove its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _run(self, tool: str, *args: str) -> None:
        command = [os.path.join(self.bin, tool), *args]
        if os.getuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, cwd=self.dir)
