"""The demo API served by gunicorn in its own processes, for tests across workers."""

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


class Gunicorn:
    """``scripts/demo_app.py`` under gunicorn with ``workers`` sync workers."""

    def __init__(self, workers: int, **settings: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "GUARD_SECRET_KEY": SECRET, "GUARD_PEPPER": PEPPER, **settings}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "--workers",
                str(workers),
                "--bind",
                f"127.0.0.1:{self.port}",
                "--chdir",
                str(ROOT / "scripts"),
                "demo_app:create_app()",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while len(self.worker_pids()) < workers or not self._answers():
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError("gunicorn did not start")
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
