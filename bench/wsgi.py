"""``bench.wsgi:app``: the benchmark app named by ``BENCH_APP``, for gunicorn."""

from __future__ import annotations

import os

from bench.apps import APPS

app, _ = APPS[os.environ["BENCH_APP"]](os.environ.get("BENCH_REDIS_URL", ""))
