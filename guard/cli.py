"""The operator's command line: ``guard keys ...``, also available as ``flask guard``.

Exit codes a script can rely on: 0 on success; 1 with one line on stderr for an unknown
key, an unreachable store, a read-only store or a key in the wrong state; 2 for a usage
error such as a bad duration. Only ``create`` and ``rotate`` ever print a token, and
only once; secrets are read from standard input, never from arguments (which leak into
shell history and ``ps``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fnmatch
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import click
import limits

from stores import (
    EnvStore,
    KeyNotFound,
    KeyRecord,
    MemoryStore,
    ReadOnlyStore,
    StoreError,
    StoreUnavailable,
)
from stores.env import render_records

from .config import GuardConfig
from .durations import parse_duration
from .errors import ConfigurationError
from .keys import Keys, KeyStateError


@dataclasses.dataclass
class Operator:
    """What the commands work on. For an ``env://`` store (read-only at run time),
    changes are made on an in-memory copy and written out as the variable's new value."""

    keys: Keys
    env_variable: str | None = None
    env_file: Path | None = None

    @classmethod
    def from_keys(cls, keys: Keys) -> Operator:
        if not isinstance(keys.store, EnvStore):
            return cls(keys)
        copy = MemoryStore()
        copy.save(*keys.store.records())
        writable = Keys(copy, keys.codec, accept_imported=keys.accept_imported, clock=keys.clock)
        return cls(writable, env_variable=keys.store.variable)

    def publish(self) -> None:
        """After a change to an ``env://`` store: update ``--env-file``, or print the value."""
        if self.env_variable is None:
            return
        value = render_records(sorted(self.keys.store.records(), key=lambda r: r.created_at))
        if self.env_file is None:
            click.echo(f"# {self.env_variable} is read-only at run time: set it to this value")
            click.echo(f"{self.env_variable}='{value}'")
        else:
            replace_env_line(self.env_file, self.env_variable, value)
            click.echo(f"updated {self.env_variable} in {self.env_file}", err=True)


def replace_env_line(path: Path, name: str, value: str) -> None:
    """Set ``name='value'`` in a .env file atomically: a temporary file in the same
    directory (mode 0600), fsync, rename. A crash leaves the old file or the new one."""
    lines = path.read_text().splitlines() if path.exists() else []
    line = f"{name}='{value}'"
    kept = [existing for existing in lines if not existing.startswith(f"{name}=")]
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write("\n".join([*kept, line]) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def operator_errors() -> Iterator[None]:
    """One clear line and exit code 1 for the errors an operator can meet."""
    try:
        yield
    except KeyNotFound as exc:
        raise click.ClickException(f"no key with id {exc.key_id}") from None
    except StoreUnavailable as exc:
        raise click.ClickException(f"the key store did not answer: {exc}") from None
    except (ReadOnlyStore, KeyStateError, ConfigurationError, StoreError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def duration(_: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param=param) from None


def scope_list(_: click.Context, __: click.Parameter, value: str | None) -> list[str]:
    return [scope.strip() for scope in (value or "").split(",") if scope.strip()]


def rate_limit(_: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None:
        try:
            limits.parse(value)
        except ValueError:
            raise click.BadParameter(f"{value!r} is not a rate limit such as 100/minute") from None
    return value


def load_keys(store_url: str | None) -> Keys:
    """Keys for the store the environment (or ``--store``) names, under its secrets."""
    settings = dict(os.environ)
    if store_url:
        settings["GUARD_STORE_URL"] = store_url
    return Keys.from_config(GuardConfig.from_mapping(settings, strict=False))


def from_flask_app() -> Keys | None:
    """Under ``flask guard``: the keys of the app Flask loads, if it runs a guard."""
    from flask.cli import ScriptInfo

    info = click.get_current_context().find_object(ScriptInfo)
    if info is None:
        return None
    state = info.load_app().extensions.get("guard")
    return None if state is None else state.keys


@click.group()
@click.option("--store", envvar="GUARD_STORE_URL", help="Key store URL (GUARD_STORE_URL).")
@click.pass_context
def cli(ctx: click.Context, store: str | None) -> None:
    """Issue, rotate and revoke the API keys the guard accepts."""
    if isinstance(ctx.obj, Operator):  # given by a caller, e.g. a test
        return
    if isinstance(ctx.obj, Keys):
        ctx.obj = Operator.from_keys(ctx.obj)
        return
    with operator_errors():
        keys = (None if store else from_flask_app()) or load_keys(store)
        ctx.obj = Operator.from_keys(keys)


@cli.group()
def keys() -> None:
    """Manage API keys."""


env_file_option = click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="For an env:// store: update this .env file atomically instead of printing.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@keys.command()
@click.option("--name", required=True, help="Who the key belongs to.")
@click.option("--scopes", callback=scope_list, help="Comma-separated scopes.")
@click.option("--expires-in", callback=duration, help="e.g. 90d; never expires if absent.")
@click.option("--rate-limit", callback=rate_limit, help="e.g. 100/minute (else the default).")
@env_file_option
@json_option
@click.pass_obj
def create(
    op: Operator,
    name: str,
    scopes: list[str],
    expires_in: float | None,
    rate_limit: str | None,
    env_file: Path | None,
    as_json: bool,
) -> None:
    """Issue a key and print its token, once."""
    op.env_file = env_file
    with operator_errors():
        token, record = op.keys.create(
            name, scopes=scopes, expires_in=expires_in, rate_limit=rate_limit
        )
        op.publish()
    print_token(token, record, as_json)


@keys.command("list")
@json_option
@click.pass_obj
def list_keys(op: Operator, as_json: bool) -> None:
    """List every key (never a secret or a digest)."""
    with operator_errors():
        records = sorted(op.keys.store.records(), key=lambda r: r.created_at)
        rows = [describe(record, op.keys) for record in records]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    columns = ("id", "name", "state", "scopes", "created", "expires", "last_used")
    table = [[cell(row[column]) for column in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in table)]) for i, c in enumerate(columns)]
    for line in [list(columns), *table]:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))


@keys.command()
@click.argument("key_id")
@json_option
@click.pass_obj
def show(op: Operator, key_id: str, as_json: bool) -> None:
    """Show one key, and during a rotation's grace period when it was last used."""
    with operator_errors():
        row = describe(op.keys.store.require(key_id), op.keys)
    if as_json:
        click.echo(json.dumps(row, indent=2))
        return
    for field, value in row.items():
        if value not in (None, [], {}):
            click.echo(f"{field:<12} {', '.join(value) if isinstance(value, list) else value}")


@keys.command()
@click.argument("key_id")
@click.option(
    "--grace",
    callback=duration,
    default="24h",
    show_default=True,
    help="How long the old key stays valid.",
)
@env_file_option
@json_option
@click.pass_obj
def rotate(op: Operator, key_id: str, grace: float, env_file: Path | None, as_json: bool) -> None:
    """Issue a successor (same name, scopes and limit); the old key lapses after --grace."""
    op.env_file = env_file
    with operator_errors():
        token, record = op.keys.rotate(key_id, grace=grace)
        op.publish()
    print_token(token, record, as_json)


@keys.command()
@click.argument("key_id")
@env_file_option
@click.pass_obj
def revoke(op: Operator, key_id: str, env_file: Path | None) -> None:
    """Refuse a key from now on, in every worker sharing the store."""
    op.env_file = env_file
    with operator_errors():
        record = op.keys.revoke(key_id)
        op.publish()
    click.echo(f"revoked {record.key_id} ({record.name})", err=True)


@keys.command()
@click.pass_obj
def verify(op: Operator) -> None:
    """Check a token read from standard input; exit 0 if valid, 1 with the reason if not."""
    token = read_secret("token")
    verdict = op.keys.verify(token)
    if not verdict.ok:
        raise click.ClickException(f"invalid: {verdict.reason.value}")
    assert verdict.record is not None
    click.echo(f"valid: key {verdict.record.key_id} ({verdict.record.name})")


@keys.command("import")
@click.option("--name", required=True, help="Who the key belongs to.")
@click.option("--scopes", callback=scope_list, help="Comma-separated scopes.")
@click.option("--rate-limit", callback=rate_limit, help="e.g. 100/minute.")
@env_file_option
@click.pass_obj
def import_(
    op: Operator, name: str, scopes: list[str], rate_limit: str | None, env_file: Path | None
) -> None:
    """Store an existing plain secret, read from standard input, by its digest."""
    op.env_file = env_file
    secret = read_secret("secret")
    with operator_errors():
        record = op.keys.import_secret(secret, name, scopes=scopes, rate_limit=rate_limit)
        op.publish()
    click.echo(f"imported as key {record.key_id}")
    click.echo(
        "the service accepts imported secrets only with GUARD_ACCEPT_IMPORTED_KEYS=true", err=True
    )


@keys.command("rotate-due")
@click.option("--max-age", callback=duration, help="Rotate keys older than this, e.g. 90d.")
@click.option("--name", "pattern", help="Rotate keys whose name matches this glob.")
@click.option("--grace", callback=duration, default="24h", show_default=True)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the new tokens here (created with mode 0600; never overwritten).",
)
@click.option("--dry-run", is_flag=True, help="Say what would be rotated, change nothing.")
@env_file_option
@click.pass_obj
def rotate_due(
    op: Operator,
    max_age: float | None,
    pattern: str | None,
    grace: float,
    output: Path | None,
    dry_run: bool,
    env_file: Path | None,
) -> None:
    """Rotate every live key older than --max-age and/or named like --name.

    Safe to re-run after a crash: a rotated key is never rotated again, nor is a
    successor while its predecessor's grace period runs, and each new token is on disk
    before its rotation is saved.
    """
    if max_age is None and pattern is None:
        raise click.UsageError("give --max-age, --name, or both")
    op.env_file = env_file
    now = op.keys.clock()
    with operator_errors():
        records = sorted(op.keys.store.records(), key=lambda r: r.created_at)
        # A successor whose predecessor is still in its grace period is mid-rotation:
        # rotating it again (say, on a re-run after a crash) would strand its clients.
        in_flight = {
            r.replaced_by for r in records if r.grace_until is not None and r.grace_until > now
        }
        due = [
            record
            for record in records
            if record.replaced_by is None
            and record.key_id not in in_flight
            and record.refusal(now) is None
            and (max_age is None or now - record.created_at >= max_age)
            and (pattern is None or fnmatch.fnmatchcase(record.name, pattern))
        ]
        if dry_run:
            for record in due:
                click.echo(f"would rotate {record.key_id} ({record.name})")
            click.echo(f"{len(due)} keys due; nothing changed (dry run)", err=True)
            return
        with token_sink(output) as write:
            for record in due:
                token, new, old = op.keys.prepare_rotation(record.key_id, grace=grace, now=now)
                write({"old_id": old.key_id, "id": new.key_id, "name": new.name, "token": token})
                op.keys.store.save(new, old)
        op.publish()
    click.echo(f"rotated {len(due)} keys; old keys stay valid for {grace:.0f}s", err=True)


@contextlib.contextmanager
def token_sink(output: Path | None) -> Iterator[Callable[[dict[str, Any]], None]]:
    """Where new tokens go, one JSON object a line, each synced before going on."""
    if output is None:
        yield lambda row: click.echo(json.dumps(row))
        return
    try:
        descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise click.ClickException(f"{output} exists: tokens are never overwritten") from None
    with os.fdopen(descriptor, "w") as handle:

        def write(row: dict[str, Any]) -> None:
            handle.write(json.dumps(row) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

        yield write


def print_token(token: str, record: KeyRecord, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"id": record.key_id, "name": record.name, "token": token}))
    else:
        click.echo(token)
        click.echo(f"key {record.key_id} ({record.name}): the token is shown only once", err=True)


def read_secret(what: str, stream: TextIO | None = None) -> str:
    """A secret from standard input (a prompt that does not echo on a terminal)."""
    source = stream or sys.stdin
    if source.isatty():
        return str(click.prompt(what.capitalize(), hide_input=True))
    value = source.readline().strip()
    if not value:
        raise click.UsageError(f"no {what} on standard input")
    return value


def describe(record: KeyRecord, keys: Keys) -> dict[str, Any]:
    """What an operator may see of a key: never the digest."""
    now = keys.clock()
    refusal = record.refusal(now)
    state = refusal or ("in grace period" if record.grace_until else "active")
    return {
        "id": record.key_id,
        "name": record.name,
        "state": state,
        "scopes": list(record.scopes),
        "rate_limit": record.rate_limit,
        "created": when(record.created_at),
        "expires": when(record.expires_at),
        "revoked": when(record.revoked_at),
        "replaces": record.replaces,
        "replaced_by": record.replaced_by,
        "valid_until": when(record.grace_until),
        "last_used": when(keys.store.last_used(record.key_id)),
        "imported": record.imported or None,
        "metadata": dict(record.metadata),
    }


def cell(value: object) -> str:
    if isinstance(value, list):
        return ",".join(value) or "-"
    return "-" if value is None else str(value)


def when(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def main() -> None:
    cli(prog_name="guard")


if __name__ == "__main__":
    main()
