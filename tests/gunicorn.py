"""The demo API (``scripts/demo_app.py``) served in its own processes, as operators serve
it: gunicorn with any worker class, or ``flask run`` (werkzeug's threaded server)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import PEPPER, SECRET
from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parents[1]


def get(url: str, token: str | None = None, timeout: float = 5) -> int:
    """The status of a GET, with a Bearer token if given."""
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


class Served:
    """A server process running the demo app, started and answering /health."""

    port: int  # chosen by the subclass before the command naming it is built

    def __init__(self, command: list[str], workers: int, settings: dict[str, str]) -> None:
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "GUARD_SECRET_KEY": SECRET, "GUARD_PEPPER": PEPPER, **settings}
        self.process = subprocess.Popen(
            command,
            cwd=ROOT / "scripts",
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while len(self.worker_pids()) < workers or not self._answers():
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"{command[2]} did not start")
            time.sleep(0.1)

    def _answers(self) -> bool:
        try:
            return get(f"{self.url}/health") == 200
        except OSError:
            return False

    def worker_pids(self) -> set[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return {int(pid) for pid in children.read_text().split()} if children.exists() else set()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(15)


class Gunicorn(Served):
    """The demo app under gunicorn with ``workers`` workers of ``worker_class`` (``sync``,
    ``gthread`` with ``threads`` threads each, ``gevent``...)."""

    def __init__(
        self, workers: int, worker_class: str = "sync", threads: int = 1, **settings: str
    ) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "gunicorn", "--workers", str(workers)]
        command += ["--worker-class", worker_class, "--threads", str(threads)]
        command += ["--bind", f"127.0.0.1:{self.port}", "demo_app:create_app()"]
        super().__init__(command, workers, settings)


class FlaskRun(Served):
    """The demo app under ``flask run``: werkzeug's development server, one new thread
    per request (as ``app.run()`` too)."""

    def __init__(self, **settings: str) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "flask", "--app", "demo_app:create_app()", "run"]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--no-reload"]
        super().__init__(command, 0, settings)
