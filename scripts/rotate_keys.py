"""Rotate keys on a schedule (cron, a Kubernetes CronJob): ``guard keys rotate-due``.

    python scripts/rotate_keys.py --max-age 90d --grace 24h --output /secure/new-tokens.jsonl
    python scripts/rotate_keys.py --name 'partner-*' --dry-run

The store and secrets come from the environment (GUARD_STORE_URL, GUARD_SECRET_KEY,
GUARD_PEPPER), as for the service. New tokens go to --output, created with mode 0600
and never overwritten (or to standard output as JSON lines); a summary goes to stderr.
Safe to re-run after a crash: no key is rotated twice and every new token is on disk
before its rotation is saved. Each rotation is a compare-and-set: a key revoked or
changed while the job runs is left as it is (said on stderr). Exit codes are those of
the `guard` command.
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import sys

from guard.cli.commands import Operator, load_keys, rotate_due


def as_typed() -> str:
    """This script's command line as it can be typed again, for its usage line: the
    interpreter (by name when that name finds it on PATH, else by path), then the script
    as it was given."""
    interpreter = sys.executable
    found = shutil.which(os.path.basename(interpreter))
    if found is not None and os.path.samefile(found, interpreter):
        interpreter = os.path.basename(interpreter)
    return shlex.join([interpreter, sys.argv[0]])


if __name__ == "__main__":
    # The command itself, not the `guard` group with its arguments prepended: its usage
    # line then names this script alone, and works when typed.
    rotate_due.main(
        sys.argv[1:], prog_name=as_typed(), obj=Operator(functools.partial(load_keys, None))
    )
