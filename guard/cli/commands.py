"""The operator's command line: ``guard keys ...``, also available as ``flask guard``.

Exit codes a script can rely on: 0 on success; 1 with one line on stderr for an unknown
key, an unreachable store (or a write it did not confirm), a read-only store, a store that
keeps nothing, a key in the wrong state, or a limiter that is unreachable or in-process
(``usage``, ``reset-limits``), and from ``list`` and ``rotate-due`` after
naming records the store holds but cannot read; 2 for a usage error such as a bad
duration, or settings no store could read back (nothing is saved). Only ``create`` and
``rotate`` (and ``rotate-due``) ever print a token, and only once; secrets are read from
standard input, never from arguments (which leak into shell history and ``ps``).

The store is, in this order: ``--store``; under ``flask guard``, the loaded app's own
store; ``GUARD_STORE_URL``. Nothing is loaded (and no secret read) until a command
needs the keys, so ``--help`` works anywhere.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fnmatch
import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit

import click
import limits

import stores
from guard.config import GuardConfig
from guard.durations import parse_duration
from guard.errors import ConfigurationError
from guard.keys.lifecycle import InvalidKeySettings, Keys, KeyStateError, Reason, WriteUnconfirmed
from guard.observability import audit
from stores import (
    Conflict,
    EnvStore,
    KeyNotFound,
    KeyRecord,
    Listing,
    MemoryStore,
    OwnerRecord,
    Quota,
    ReadOnlyStore,
    StoreError,
    StoreUnavailable,
)
from stores.base import REFILLS
from stores.env import parse_records, render_records
from stores.envfile import env_line, locked, read_variable, write_variable
from stores.urls import scrub

if TYPE_CHECKING:
    from guard._counting.plan import Window
    from guard._request.pipeline import GuardState
    from guard._request.rate_limits import RateLimits


class Operator:
    """What the commands work on: the keys, loaded on first use.

    :param load: builds the :class:`Keys` (reads the store URL and the secrets).
    :param given: the keys were handed over by a caller who keeps them (a test, an
        embedding program), so an in-process store outlives the command.
    :param actor: who the audit entries of the changes name (``--actor``); else the keys'
        own, by default the OS user.
    """

    def __init__(
        self, load: Callable[[], Keys], *, given: bool = False, actor: str | None = None
    ) -> None:
        self._load = load
        self.given = given
        self.actor = actor

    @functools.cached_property
    def keys(self) -> Keys:
        audit_to_stderr()
        with operator_errors():
            keys = self._load()
        if self.actor is not None:
            keys.actor = self.actor
        return keys

    def require(self, key_id: str) -> KeyRecord:
        """The record of ``key_id``, or the command's one-line error."""
        with operator_errors():
            return self.keys.store.require(key_id)

    @functools.cached_property
    def limits(self) -> RateLimits:
        """The limiter whose counters the service's workers count a key's requests in:
        under ``flask guard`` the loaded app's, else the one ``GUARD_RATE_LIMIT`` and
        ``GUARD_RATELIMIT_*`` of the environment describe.

        :raises click.ClickException: for an in-process limiter (``memory://``): each
            server process counts in its own memory, and this one has nothing to read.
        """
        # Imported here: redis-py, which the commands otherwise may not need.
        from guard._request.rate_limits import RateLimits

        state = flask_guard_state()
        with operator_errors():
            if state is not None:
                found = state.limits
            else:
                config = GuardConfig.from_mapping(dict(os.environ), strict=False)
                found = RateLimits.from_config(config)
        if urlsplit(found.storage_url).scheme == "memory":
            raise click.ClickException(
                "the limiter is memory:// (GUARD_RATELIMIT_STORAGE_URL): each server process "
                "counts in its own memory, out of this command's reach; set the service's "
                "shared limiter (redis://...) in this command's environment too"
            )
        return found

    @contextlib.contextmanager
    def writing(self, env_file: Path | None) -> Iterator[Keys]:
        """The keys to change, for one write command.

        For an ``env://`` store (read-only at run time) the change is made on a copy of
        the records and written out: to ``env_file`` under its lock, the records read
        from that file (never from this shell's environment, which may be stale), or
        printed as the variable's new value. A store that keeps nothing past this
        process is refused.
        """
        keys = self.keys
        store = keys.store
        if not isinstance(store, EnvStore):
            if env_file is not None:
                raise click.UsageError(
                    "--env-file applies only to an env:// store (this command's store is "
                    f"{type(store).__name__}): the change goes to that store itself"
                )
            if not store.persistent and not self.given:
                raise click.ClickException(
                    f"{type(store).__name__} keeps keys only inside this process: the change "
                    f"would be lost when the command exits. Stores that keep keys: "
                    f"{keeping_stores()}"
                )
            with operator_errors():
                yield keys
            return
        variable = store.variable
        with operator_errors():
            if env_file is None:
                copy = writable_copy(keys, store.records())
                yield copy
                value = render_records(sorted(copy.store.records(), key=lambda r: r.created_at))
                click.echo(f"# {variable} is read-only at run time: set it to this value")
                click.echo(env_line(variable, value))
                return
            with locked(env_file):
                text = read_variable(env_file, variable) or ""
                records = parse_records(text, f"{variable} in {env_file}")
                warn_if_environment_differs(store, records, env_file)
                copy = writable_copy(keys, records.values())
                yield copy
                value = render_records(sorted(copy.store.records(), key=lambda r: r.created_at))
                write_variable(env_file, variable, value)
            click.echo(f"updated {variable} in {env_file}", err=True)


def keeping_stores() -> str:
    """The stores a write command can keep its change in, by URL scheme."""
    kept = []
    for scheme in stores.schemes():
        cls = stores.store_class(scheme)
        if cls is not None and cls.persistent and not cls.read_only:
            kept.append(f"{scheme}://")
    return ", ".join(kept) + ", or env:// with --env-file"


def writable_copy(keys: Keys, records: Any) -> Keys:
    copy = MemoryStore()
    copy.save(*records)
    return Keys(
        copy, keys.codec, accept_imported=keys.accept_imported, clock=keys.clock, actor=keys.actor
    )


def warn_if_environment_differs(
    store: EnvStore, from_file: dict[str, KeyRecord], env_file: Path
) -> None:
    """Say so when the shell's variable and the file disagree: the file wins (it is what
    this command rewrites and what the service loads), and the operator should know the
    environment is stale."""
    if store.variable not in os.environ:
        return
    if {r.key_id: r for r in store.records()} != from_file:
        click.echo(
            f"warning: {store.variable} in the environment differs from {env_file}; "
            f"using {env_file}, the file this command rewrites (the environment is stale: "
            "load the file again after this command)",
            err=True,
        )


class BadSettings(click.ClickException):
    """Settings no store could read back: one line, and exit code 2 like any usage error
    (click's own usage errors print the usage too)."""

    exit_code = 2


@contextlib.contextmanager
def operator_errors() -> Iterator[None]:
    """One clear line and exit code 1 for the errors an operator can meet (2 for bad
    settings)."""
    try:
        yield
    except InvalidKeySettings as exc:
        raise BadSettings(str(exc)) from None
    except KeyNotFound as exc:
        raise click.ClickException(f"no key with id {exc.key_id}") from None
    except WriteUnconfirmed as exc:
        raise click.ClickException(
            f"{exc}: run the command again (safe: it changes nothing twice, and a "
            "revocation is published again)"
        ) from None
    except StoreUnavailable as exc:
        raise click.ClickException(f"the key store did not answer: {exc}") from None
    except Conflict as exc:
        raise click.ClickException(f"{exc}: run the command again") from None
    except (ReadOnlyStore, KeyStateError, ConfigurationError, StoreError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def duration(_: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param=param) from None


def scope_list(_: click.Context, __: click.Parameter, value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [scope.strip() for scope in value.split(",") if scope.strip()]


def rate_limit(_: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """One limit or several separated by ``;`` (``5/minute;1/day``), as Flask-Limiter
    takes them; kept as given."""
    if value is not None and value != "default":
        try:
            limits.parse_many(value)
        except ValueError:
            raise click.BadParameter(
                f"{value!r} is not a rate limit such as 100/minute or 5/minute;1/day"
            ) from None
    return value


def network_list(_: click.Context, __: click.Parameter, value: str | None) -> list[str] | None:
    """Comma-separated networks, checked by :func:`guard.keys.lifecycle.networks` (a bad
    one is a usage error naming it). An empty value is refused rather than read as "from
    anywhere": an unset shell variable must not open a key to every address."""
    if value is None:
        return None
    found = [network.strip() for network in value.split(",") if network.strip()]
    if not found:
        raise BadSettings(
            "--allow-from needs at least one network; --allow-anywhere (update) lifts a list"
        )
    return found


def metadata_pairs(
    _: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> dict[str, str | None]:
    pairs: dict[str, str | None] = {}
    for item in values:
        field, sep, value = item.partition("=")
        if not sep or not field:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param=param)
        pairs[field] = value or None
    return pairs


def load_keys(store_url: str | None) -> Keys:
    """Keys for the store ``store_url`` names (else GUARD_STORE_URL), under the secrets
    of the environment; with GUARD_AUDIT_STREAM_URL set, the audit entries of the
    command's changes go to that stream too, sent before the command exits."""
    settings = dict(os.environ)
    if store_url:
        settings["GUARD_STORE_URL"] = store_url
    config = GuardConfig.from_mapping(settings, strict=False)
    if config.audit_stream_url:
        # Imported here: redis-py, which the commands otherwise may not need.
        from guard.observability.audit_stream import RedisStreamHandler

        attach_audit_handler(RedisStreamHandler.from_config(config))
    return Keys.from_config(config)


def attach_audit_handler(handler: logging.Handler) -> None:
    """Put ``handler`` on ``guard.audit`` (at INFO, unless a level was set) for the current
    command only: removed and closed (its pending entries sent) when the command ends."""
    trail = audit.logger
    level = trail.level
    trail.addHandler(handler)
    if level == logging.NOTSET:
        trail.setLevel(logging.INFO)

    def detach() -> None:
        trail.removeHandler(handler)
        trail.setLevel(level)
        handler.close()

    click.get_current_context().call_on_close(detach)


def audit_to_stderr() -> None:
    """Show the audit entries of the command's changes on stderr, one JSON line each,
    unless logging is configured already (under ``flask guard``, an app that configured
    it routes them; in a test, its capture does): an operator sees what the trail
    recorded, and standard output keeps the command's own result."""
    real = [h for h in audit.logger.handlers if not isinstance(h, logging.NullHandler)]
    if real or logging.getLogger().handlers:
        return
    attach_audit_handler(EchoToStderr())


class EchoToStderr(logging.Handler):
    """Each record's message on the command's stderr, as its other notices are."""

    def emit(self, record: logging.LogRecord) -> None:
        click.echo(record.getMessage(), err=True)


def flask_guard_state() -> GuardState | None:
    """Under ``flask guard``: the guard of the app Flask loads, if it runs one."""
    from flask.cli import ScriptInfo

    info = click.get_current_context().find_object(ScriptInfo)
    if info is None:
        return None
    state: GuardState | None = info.load_app().extensions.get("guard")
    return state


def from_flask_app() -> Keys | None:
    """Under ``flask guard``: the keys of the app Flask loads, if it runs a guard."""
    state = flask_guard_state()
    return None if state is None else state.keys


def resolve_keys(store_url: str | None) -> Keys:
    """The one precedence rule: ``--store``, then the app's store under ``flask guard``,
    then GUARD_STORE_URL."""
    if store_url:
        return load_keys(store_url)
    return from_flask_app() or load_keys(None)


@click.group()
@click.option(
    "--store",
    metavar="URL",
    help="Key store URL. The store is this option if given; else, under `flask guard`, the "
    "loaded app's store; else GUARD_STORE_URL.",
)
@click.option(
    "--actor",
    metavar="NAME",
    help="Who the audit entries of this command's changes name (else the OS user).",
)
@click.pass_context
def cli(ctx: click.Context, store: str | None, actor: str | None) -> None:
    """Issue, rotate and revoke the API keys the guard accepts.

    The store is --store if given; else, under `flask guard`, the loaded app's own store;
    else GUARD_STORE_URL. Secrets (GUARD_SECRET_KEY, GUARD_PEPPER) are read only by the
    commands that use keys, never for --help. Every change writes an audit entry on
    `guard.audit`, shown on stderr unless logging is configured (and sent to
    GUARD_AUDIT_STREAM_URL when set).
    """
    if isinstance(ctx.obj, Operator):  # given by a caller, e.g. a test
        ctx.obj.actor = actor or ctx.obj.actor
        return
    if isinstance(ctx.obj, Keys):
        given: Keys = ctx.obj
        ctx.obj = Operator(lambda: given, given=True, actor=actor)
        return
    ctx.obj = Operator(functools.partial(resolve_keys, store), actor=actor)


@cli.group()
def keys() -> None:
    """Manage API keys."""


@cli.group()
def store() -> None:
    """Prepare the key store (init) and check what Redis lets the guard do (check)."""


@store.command("init")
@click.option(
    "--prefix",
    envvar="GUARD_STORE_PREFIX",
    default="guard:",
    show_default=True,
    help="The store prefix (GUARD_STORE_PREFIX), which names the SQL table: guard: -> guard_keys.",
)
@click.pass_context
def store_init(ctx: click.Context, prefix: str) -> None:
    """Create the SQL store's table, or upgrade it to this guard's schema version.

    Run it before the app starts, with a database user that may create tables; run
    again, it changes nothing. The store is --store, else GUARD_STORE_URL (not the app's:
    an app stops at start-up until its table is ready). Other stores need no set-up.
    """
    root = ctx.find_root()
    url = root.params.get("store") if root.command is cli else None
    url = url or os.environ.get("GUARD_STORE_URL") or "memory://"
    with operator_errors():
        cls = stores.store_class(urlsplit(url).scheme)
        if cls is None:
            stores.from_url(url)  # raises the error that names every known scheme
        if cls is None or cls.__module__ != "stores.sql":
            click.echo(f"{url.partition(':')[0]}:// stores keep no schema: nothing to do")
            return
        from stores import sql  # imported above by store_class: SQLAlchemy is installed

        engine, owned = sql.engine_from_url(url, timeout=10.0)
        try:
            before, after = sql.init_schema(engine, prefix)
        finally:
            if owned:
                engine.dispose()
    table = sql.table_for(prefix).name
    if before == after:
        click.echo(f"the key table {table} is at schema version {after}: nothing changed")
    elif before == 0:
        click.echo(f"created the key table {table} (schema version {after})")
    else:
        click.echo(f"upgraded the key table {table} from schema version {before} to {after}")


env_file_option = click.option(
    "--env-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="For an env:// store: read the records from this .env file and rewrite its line "
    "(locked, atomic, mode 0600) instead of printing the new value.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
scopes_option = click.option("--scopes", callback=scope_list, help="Comma-separated scopes.")
rate_limit_option = click.option(
    "--rate-limit",
    callback=rate_limit,
    help="e.g. 100/minute, or several: 5/minute;1/day (else the service's default).",
)
metadata_option = click.option(
    "--metadata",
    multiple=True,
    callback=metadata_pairs,
    metavar="KEY=VALUE",
    help="Set a metadata entry (repeatable); KEY= removes it.",
)
allow_from_option = click.option(
    "--allow-from",
    callback=network_list,
    metavar="NETWORKS",
    help="Only from these comma-separated networks, e.g. 10.0.0.0/8,2001:db8::/32 (a bare "
    "address is its /32 or /128); else from anywhere.",
)
quota_option = click.option(
    "--quota",
    type=click.IntRange(min=0),
    help="Units the key may spend (a request spends its view's cost, 1 by default) per "
    "--quota-refill period, or over its life; on update, a top-up: the new allowance, "
    "counted afresh from now (0 removes the quota).",
)
quota_refill_option = click.option(
    "--quota-refill",
    type=click.Choice(REFILLS),
    help="When the quota refills: 1d or 30d from when it was set, monthly on the 1st "
    "(UTC); never if absent (a lifetime quota; on update, the refill it had).",
)
grace_option = click.option(
    "--grace",
    callback=duration,
    default="24h",
    show_default=True,
    help="How long the old key stays valid after rotation, e.g. 24h.",
)


def settings_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options that set what a key allows (scopes, limit, metadata, networks), shared
    by create, import and update, with --env-file and --json."""
    options = (
        scopes_option,
        rate_limit_option,
        metadata_option,
        allow_from_option,
        env_file_option,
        json_option,
    )
    for option in reversed(options):
        command = option(command)
    return command


def key_change_options(command: Callable[..., None]) -> Callable[..., None]:
    """The arguments of a command that changes one key's state (revoke, disable, enable):
    its id, --env-file and --json."""
    options = (click.argument("key_id"), env_file_option, json_option, click.pass_obj)
    for option in reversed(options):
        command = option(command)
    return command


def plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def emit(as_json: bool, row: dict[str, Any], text: str, err: bool = False) -> None:
    if as_json:
        click.echo(json.dumps(row))
    else:
        click.echo(text, err=err)


@keys.command()
@click.option("--name", required=True, help="Who the key belongs to.")
@click.option("--expires-in", callback=duration, help="e.g. 90d; never expires if absent.")
@settings_options
@quota_option
@quota_refill_option
@click.option("--owner", help="Who owns the key: its limits and quota are shared by its keys.")
@click.pass_obj
def create(
    op: Operator,
    name: str,
    owner: str | None,
    scopes: list[str] | None,
    expires_in: float | None,
    rate_limit: str | None,
    metadata: dict[str, str | None],
    allow_from: list[str] | None,
    quota: int | None,
    quota_refill: str | None,
    env_file: Path | None,
    as_json: bool,
) -> None:
    """Issue a key and print its token, once."""
    if quota_refill is not None and not quota:
        raise click.UsageError("--quota-refill needs a --quota of at least 1")
    with op.writing(env_file) as keys, token_kept(as_json):
        token, record = keys.create(
            name,
            scopes=scopes or (),
            expires_in=expires_in,
            rate_limit=None if rate_limit == "default" else rate_limit,
            metadata={k: v for k, v in metadata.items() if v is not None},
            allow_from=allow_from or (),
            quota=quota or None,
            quota_refill=quota_refill,
            owner=owner,
        )
    print_token(token, record, as_json)


STATES = ("active", "in grace period", "revoked", "expired", "rotated", "disabled")


@keys.command("list")
@click.option("--state", type=click.Choice(STATES), help="Only keys in this state.")
@click.option("--name", "pattern", help="Only keys whose name matches this glob.")
@click.option("--scope", help="Only keys holding this scope.")
@click.option("--owner", help="Only keys of this owner.")
@json_option
@click.pass_obj
def list_keys(
    op: Operator,
    state: str | None,
    pattern: str | None,
    scope: str | None,
    owner: str | None,
    as_json: bool,
) -> None:
    """List keys (never a secret or a digest), optionally filtered."""
    keys = op.keys
    with operator_errors():
        listing = keys.store.listing()
        records = sorted(listing.records, key=lambda r: r.created_at)
        records = [
            r
            for r in records
            if (pattern is None or fnmatch.fnmatchcase(r.name, pattern))
            and (scope is None or scope in r.scopes)
            and (owner is None or r.owner == owner)
        ]
        rows = [describe(record, keys) for record in records]
    rows = [row for row in rows if state is None or row["state"] == state]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        columns = ("id", "name", "state", "scopes", "created", "expires", "last_used")
        table = [[cell(row[column]) for column in columns] for row in rows]
        widths = [max([len(c), *(len(r[i]) for r in table)]) for i, c in enumerate(columns)]
        for line in [list(columns), *table]:
            click.echo("  ".join(c.ljust(width) for c, width in zip(line, widths, strict=True)))
    report_unreadable(listing)


def report_unreadable(listing: Listing) -> None:
    """Name each record the store holds but cannot read, after the work done with the
    others, and exit 1: one bad record never hides the rest, nor goes unnoticed."""
    for error in listing.unreadable:
        click.echo(f"unreadable: {error}", err=True)
    if listing.unreadable:
        raise click.ClickException(
            f"{plural(len(listing.unreadable), 'record')} could not be read (named above): "
            "fix or delete them in the store"
        )


@keys.command()
@click.argument("key_id")
@json_option
@click.pass_obj
def show(op: Operator, key_id: str, as_json: bool) -> None:
    """Show one key, and during a rotation's grace period when it was last used."""
    keys = op.keys
    with operator_errors():
        row = describe(keys.store.require(key_id), keys)
    show_row(row, as_json)


def show_row(row: dict[str, Any], as_json: bool) -> None:
    """One record for ``show``: JSON, or a line for each field that has a value."""
    if as_json:
        click.echo(json.dumps(row, indent=2))
        return
    for field, value in row.items():
        if value not in (None, [], {}):
            shown = ", ".join(value) if isinstance(value, list) else value
            click.echo(f"{field:<12} {shown}")


@keys.command()
@click.argument("key_id")
@grace_option
@env_file_option
@json_option
@click.pass_obj
def rotate(op: Operator, key_id: str, grace: float, env_file: Path | None, as_json: bool) -> None:
    """Issue a successor (same name, scopes and limit); the old key lapses after --grace."""
    with op.writing(env_file) as keys, token_kept(as_json):
        token, record = keys.rotate(key_id, grace=grace)
    print_token(token, record, as_json)


@keys.command()
@key_change_options
def revoke(op: Operator, key_id: str, env_file: Path | None, as_json: bool) -> None:
    """Refuse a key from now on, in every worker sharing the store."""
    with op.writing(env_file) as keys:
        record = keys.revoke(key_id)
    row = {"id": record.key_id, "name": record.name, "revoked": when(record.revoked_at)}
    emit(as_json, row, f"revoked {record.key_id} ({record.name})", err=True)


def switch_command(name: str, summary: str, *, on: bool) -> None:
    """Register ``guard keys NAME ID``, which turns a key on or off (``Keys.enable`` /
    ``Keys.disable``): one command body for both, so they report alike."""

    @keys.command(name, help=summary)
    @key_change_options
    def command(op: Operator, key_id: str, env_file: Path | None, as_json: bool) -> None:
        with op.writing(env_file) as keys:
            record = keys.enable(key_id) if on else keys.disable(key_id)
            row = describe(record, keys)
        text = f"{name}d {record.key_id} ({record.name}): {row['state']}"
        emit(as_json, row, text, err=True)


switch_command(
    "disable",
    "Refuse a key until it is enabled again, in every worker, keeping all else.",
    on=False,
)
switch_command("enable", "Accept a disabled key again (a revoked key stays revoked).", on=True)


@keys.command()
@click.argument("key_id")
@settings_options
@click.option(
    "--allow-anywhere", is_flag=True, help="Lift the key's --allow-from list: from anywhere."
)
@quota_option
@quota_refill_option
@click.option("--owner", help="Move the key to this owner ('none': no owner).")
@click.pass_obj
def update(
    op: Operator,
    key_id: str,
    owner: str | None,
    scopes: list[str] | None,
    rate_limit: str | None,
    metadata: dict[str, str | None],
    allow_from: list[str] | None,
    quota: int | None,
    quota_refill: str | None,
    env_file: Path | None,
    as_json: bool,
    allow_anywhere: bool,
) -> None:
    """Change a key's scopes, rate limit, metadata, networks, quota or owner without
    rotating it.

    --scopes replaces every scope; --rate-limit default goes back to the service's
    default; --metadata KEY=VALUE sets one entry and KEY= removes it; --allow-from
    replaces every network and --allow-anywhere removes them all; --quota N tops the
    quota up: N units from now on, counted afresh (what was spent is forgotten), and
    --quota 0 removes it; --owner NAME moves it to another owner (none: no owner). A key
    in a rotation changes with its successor and a predecessor still in its grace period
    (one quota, spent by all of their tokens).
    """
    if allow_from is not None and allow_anywhere:
        raise click.UsageError("give --allow-from or --allow-anywhere, not both")
    networks = [] if allow_anywhere else allow_from
    unchanged = scopes is None and rate_limit is None and not metadata and networks is None
    if unchanged and quota is None and not owner:
        raise click.UsageError(
            "give --scopes, --rate-limit, --metadata, --allow-from, --allow-anywhere, "
            "--quota or --owner"
        )
    if quota_refill is not None and not quota:
        raise click.UsageError("--quota-refill needs a --quota of at least 1")
    with op.writing(env_file) as keys:
        limit = None if rate_limit is None else ("" if rate_limit == "default" else rate_limit)
        record = keys.update(
            key_id,
            scopes=scopes,
            rate_limit=limit,
            metadata=metadata,
            allow_from=networks,
            quota=quota,
            quota_refill=quota_refill,
            owner=None if owner is None else ("" if owner == "none" else owner),
        )
        row = describe(record, keys)
        others = [other.key_id for other in keys.rotation_of(record)[1:]]
    rotation = f", and with it {', '.join(others)} (the same key, mid-rotation)" if others else ""
    emit(as_json, row, f"updated {record.key_id} ({record.name}){rotation}", err=True)


@contextlib.contextmanager
def limiter_errors() -> Iterator[None]:
    """One line and exit code 1 when the limiter does not answer."""
    try:
        yield
    except limits.errors.StorageError as exc:
        raise click.ClickException(f"the limiter did not answer: {exc}") from None


@keys.command()
@click.argument("key_id")
@json_option
@click.pass_obj
def usage(op: Operator, key_id: str, as_json: bool) -> None:
    """Show where a key stands in each of its rate-limit windows, its quota, its owner's
    share, and its last use.

    Read from the limiter's counters (the service's settings, GUARD_RATELIMIT_STORAGE_URL
    and GUARD_RATE_LIMIT, in this command's environment) without counting a request. On
    Redis a window's count includes the units workers hold leased and have not spent yet.
    """
    keys, record, limiter = op.keys, op.require(key_id), op.limits
    owner = None if record.owner is None else keys.store.get_owner(record.owner)
    with limiter_errors():
        windows = limiter.usage(record, owner)
    row = usage_of(record, owner, keys, windows, leased=limiter.leased)
    if as_json:
        click.echo(json.dumps(row, indent=2))
        return
    click.echo(f"key {record.key_id} ({record.name}), last used {row['last_used'] or 'never'}")
    shares = [row] if row["owner"] is None else [row, row["owner"]]
    for share, label in zip(shares, ("quota", "owner-quota"), strict=False):
        for window in share["windows"]:
            click.echo(
                f"  {window['policy']:<8} {window['limit']:<20} {window['used']} used, "
                f"{window['remaining']} left, resets in {window['reset_in']}s"
            )
        spent = share["quota"]
        if spent is not None:
            refill = (
                "never refills"
                if spent["refill"] is None
                else f"refills {spent['refill']}, in {spent['refills_in']}s"
            )
            click.echo(
                f"  {label:<8} {spent['allowance']:<20} {spent['used']} used, "
                f"{spent['remaining']} left, {refill}"
            )
    if limiter.leased:
        click.echo("counts include units leased to workers and not yet spent", err=True)


def usage_of(
    record: KeyRecord,
    owner: OwnerRecord | None,
    keys: Keys,
    windows: tuple[Window, ...],
    *,
    leased: bool,
) -> dict[str, Any]:
    """What ``guard keys usage`` reports of a key: its windows and quota, and its owner's
    (shared with the owner's other keys)."""
    found = {window.policy: window for window in windows}

    def rates(prefix: str) -> list[dict[str, Any]]:
        return [
            {
                "policy": window.policy,
                "limit": str(window.item),
                "used": window.item.amount - window.remaining,
                "remaining": window.remaining,
                "reset_in": window.reset_in,
            }
            for window in windows
            if window.item is not None and window.policy.partition("-")[0] == prefix
        ]

    def spent(policy: str, quota: Quota | None) -> dict[str, Any] | None:
        if quota is None:
            return None
        window = found[policy]
        return {
            "allowance": quota.allowance,
            "used": quota.allowance - window.remaining,
            "remaining": window.remaining,
            "refill": quota.refill,
            "refills_in": window.reset_in if window.refills else None,
            "since": when(quota.since),
        }

    return {
        "id": record.key_id,
        "name": record.name,
        "rate_limit": record.rate_limit,
        "windows": rates("key"),
        "quota": spent("quota", record.quota),
        "owner": None
        if owner is None
        else {
            "name": owner.name,
            "rate_limit": owner.rate_limit,
            "windows": rates("owner"),
            "quota": spent("owner-quota", owner.quota),
        },
        "includes_leased_units": leased,
        "last_used": when(keys.store.last_used(record.key_id)),
    }


@keys.command("reset-limits")
@click.argument("key_id")
@click.option("--quota", "with_quota", is_flag=True, help="Clear its quota's count too.")
@json_option
@click.pass_obj
def reset_limits(op: Operator, key_id: str, with_quota: bool, as_json: bool) -> None:
    """Clear a key's rate-limit window counters: its next request opens new windows.
    With --quota, its quota's count as well (all of it left again). Its owner's windows
    and quota, shared with the owner's other keys, are left alone.

    Workers refusing the key as over its limit ask the limiter again within a second.
    Units a worker already holds leased are still spent, on top of the new windows.
    """
    keys, record, limiter = op.keys, op.require(key_id), op.limits
    with limiter_errors():
        cleared = limiter.clear(record, quota=with_quota)
    keys.audit("key.limits_reset", record, {"windows": list(cleared)})
    row = {"id": record.key_id, "name": record.name, "cleared": list(cleared)}
    windows = plural(len([p for p in cleared if p != "quota"]), "window")
    also = " and the quota" if "quota" in cleared else ""
    text = f"reset {windows}{also} of {record.key_id} ({record.name})"
    emit(as_json, row, text, err=True)


@keys.command()
@json_option
@click.pass_obj
def verify(op: Operator, as_json: bool) -> None:
    """Check a token read from standard input; exit 0 if valid, 1 with the reason if not."""
    token = read_secret("token")
    keys = op.keys
    verdict = keys.verify(token)
    record = verdict.record
    why = verdict.reason.value
    if verdict.reason is Reason.MALFORMED and not keys.accept_imported:
        # Not in this server's format: it may be an imported secret, which this
        # configuration does not look up. Say so rather than "malformed".
        imported = Keys(keys.store, keys.codec, accept_imported=True).verify(token)
        record = imported.record
        why = (
            "an imported secret, and imported secrets are not accepted by this "
            "configuration (GUARD_ACCEPT_IMPORTED_KEYS is off)"
            if record is not None
            else "malformed (not a token this server issued; imported secrets are not "
            "accepted by this configuration)"
        )
    row = {
        "valid": verdict.ok,
        "reason": verdict.reason.value,
        "id": None if record is None else record.key_id,
        "name": None if record is None else record.name,
    }
    if as_json:
        click.echo(json.dumps(row))
        if not verdict.ok:
            sys.exit(1)
        return
    if not verdict.ok:
        raise click.ClickException(f"invalid: {why}")
    assert record is not None
    click.echo(f"valid: key {record.key_id} ({record.name})")


@keys.command("import")
@click.option("--name", required=True, help="Who the key belongs to.")
@settings_options
@click.pass_obj
def import_(
    op: Operator,
    name: str,
    scopes: list[str] | None,
    rate_limit: str | None,
    metadata: dict[str, str | None],
    allow_from: list[str] | None,
    env_file: Path | None,
    as_json: bool,
) -> None:
    """Store an existing plain secret, read from standard input, by its digest."""
    secret = read_secret("secret")
    with op.writing(env_file) as keys:
        record = keys.import_secret(
            secret,
            name,
            scopes=scopes or (),
            rate_limit=None if rate_limit == "default" else rate_limit,
            metadata={k: v for k, v in metadata.items() if v is not None},
            allow_from=allow_from or (),
        )
    emit(as_json, {"id": record.key_id, "name": record.name}, f"imported as key {record.key_id}")
    if not keys.accept_imported:
        click.echo(
            "the service accepts imported secrets only with GUARD_ACCEPT_IMPORTED_KEYS=true",
            err=True,
        )


@keys.command("rotate-due")
@click.option("--max-age", callback=duration, help="Rotate keys older than this, e.g. 90d.")
@click.option("--name", "pattern", help="Rotate keys whose name matches this glob.")
@grace_option
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
    before its rotation is saved. A key changed meanwhile (say, revoked) is left as it is.
    """
    if max_age is None and pattern is None:
        raise click.UsageError("give --max-age, --name, or both")
    if dry_run:
        keys = op.keys
        with operator_errors():
            listing = keys.store.listing()
        due = due_for_rotation(listing.records, max_age, pattern, keys.clock())
        for record in due:
            click.echo(f"would rotate {record.key_id} ({record.name})")
        click.echo(f"{plural(len(due), 'key')} due; nothing changed (dry run)", err=True)
        report_unreadable(listing)
        return
    rotated = 0
    with op.writing(env_file) as keys:
        now = keys.clock()
        listing = keys.store.listing()
        due = due_for_rotation(listing.records, max_age, pattern, now)
        with token_sink(output) as write:
            for record in due:
                try:
                    token, new, old = keys.prepare_rotation(record.key_id, grace=grace, now=now)
                except KeyStateError as exc:
                    click.echo(f"skipped {record.key_id}: {exc}", err=True)
                    continue
                write({"old_id": old.key_id, "id": new.key_id, "name": new.name, "token": token})
                try:
                    keys.save_rotation(new, old)
                except Conflict:
                    # Changed since it was read (revoked, say): its change wins, and the
                    # token just written was never saved, so it authenticates nothing.
                    click.echo(
                        f"skipped {record.key_id}: changed during the rotation; the token "
                        f"written for {new.key_id} was not saved",
                        err=True,
                    )
                    continue
                rotated += 1
    click.echo(f"rotated {plural(rotated, 'key')}; old keys stay valid for {grace:.0f}s", err=True)
    report_unreadable(listing)


def due_for_rotation(
    found: list[KeyRecord], max_age: float | None, pattern: str | None, now: float
) -> list[KeyRecord]:
    records = sorted(found, key=lambda r: r.created_at)
    # A successor whose predecessor is still in its grace period is mid-rotation:
    # rotating it again (say, on a re-run after a crash) would strand its clients.
    in_flight = {
        r.replaced_by for r in records if r.grace_until is not None and r.grace_until > now
    }
    return [
        record
        for record in records
        if record.replaced_by is None
        and record.key_id not in in_flight
        and record.refusal(now) is None
        and (max_age is None or now - record.created_at >= max_age)
        and (pattern is None or fnmatch.fnmatchcase(record.name, pattern))
    ]


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


@contextlib.contextmanager
def token_kept(as_json: bool) -> Iterator[None]:
    """Around a write that issues a token: if the store did not confirm the write, the
    token is printed all the same (it works if the write applied, and is then never
    shown again), and the command fails saying how to tell."""
    try:
        yield
    except WriteUnconfirmed as exc:
        if exc.token is None or exc.record is None:
            raise
        print_token(exc.token, exc.record, as_json)
        raise click.ClickException(
            f"{exc}: the token printed is key {exc.record.key_id}'s and works only if the "
            f"change was saved; `guard keys show {exc.record.key_id}` tells"
        ) from None


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
        "owner": record.owner,
        "state": state,
        "scopes": list(record.scopes),
        "rate_limit": record.rate_limit,
        "allow_from": list(record.allow_from),
        "quota": quota_text(record.quota),
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


def quota_text(quota: Quota | None) -> str | None:
    """``10000 monthly since 2026-12-08T01:30:00Z`` (the allowance, its refill, and
    when it was last set, from which its count runs)."""
    if quota is None:
        return None
    return f"{quota.allowance} {quota.refill or 'lifetime'} since {when(quota.since)}"


def cell(value: object) -> str:
    if isinstance(value, list):
        return ",".join(value) or "-"
    return "-" if value is None else str(value)


def when(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


@store.command("check")
@click.pass_context
def store_check(ctx: click.Context) -> None:
    """Check that Redis lets the guard do what it needs.

    For each Redis the settings name (--store or GUARD_STORE_URL, and
    GUARD_RATELIMIT_STORAGE_URL, GUARD_AUDIT_STREAM_URL, from the environment), asks
    Redis, as the configured user, which of the commands, keys and channels the guard
    needs it would refuse, without running any; names each as the ACL rule to add.
    Exits 1 if any is missing or a Redis does not answer. Reads no secret.
    """
    # Imported here: they load redis-py, which the other commands may not need.
    from guard.observability import redis_access
    from stores.redis_acl import describe

    defaults = {field.name: field.default for field in dataclasses.fields(GuardConfig)}

    def setting(name: str) -> str:
        return os.environ.get(f"GUARD_{name.upper()}") or str(defaults[name])

    store_url = ctx.find_root().params.get("store") or setting("store_url")
    try:
        timeout = float(setting("store_timeout"))
    except ValueError:
        raise click.UsageError("GUARD_STORE_TIMEOUT must be a number") from None
    found = redis_access.parts(
        store_url=store_url,
        store_prefix=setting("store_prefix"),
        ratelimit_storage_url=setting("ratelimit_storage_url"),
        audit_stream_url=os.environ.get("GUARD_AUDIT_STREAM_URL", ""),
        audit_stream_key=setting("audit_stream_key"),
    )
    if not found:
        click.echo("no Redis in the settings: nothing to check")
        return
    failed = False
    for part in found:
        try:
            lacking = part.lacking(timeout)
        except StoreUnavailable as exc:
            click.echo(f"unchecked {part}: {scrub(str(exc), part.url)}")
            failed = True
            continue
        if lacking:
            click.echo(f"missing {part}: {describe(lacking)}")
            failed = True
        else:
            click.echo(f"ok {part}")
    if failed:
        raise click.ClickException(
            "the Redis user cannot do all the guard needs (docs/deployment.md gives the "
            "minimal ACL)"
        )


# -- owners: limits and a quota shared by the keys naming them ----------------------------


@cli.group()
def owners() -> None:
    """Manage owners: limits and a quota shared by every key of one owner."""


@contextlib.contextmanager
def owner_writes(op: Operator) -> Iterator[Keys]:
    """The keys whose store an owner command changes. An ``env://`` store is changed in
    place, to be refused: its variable holds keys only, no owners."""
    if isinstance(op.keys.store, EnvStore):
        with operator_errors():
            yield op.keys
        return
    with op.writing(None) as keys:
        yield keys


def owner_row(owner: OwnerRecord, keys: Keys) -> dict[str, Any]:
    """What an operator sees of an owner, with how many keys name it."""
    named = sum(1 for record in keys.store.records() if record.owner == owner.name)
    return {
        "name": owner.name,
        "rate_limit": owner.rate_limit,
        "quota": quota_text(owner.quota),
        "keys": named,
    }


def owner_rate_limit(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """As ``--rate-limit`` for keys, with ``none`` for no limits of the owner's own."""
    return value if value == "none" else rate_limit(ctx, param, value)


@owners.command("set")
@click.argument("name")
@click.option(
    "--rate-limit",
    callback=owner_rate_limit,
    help="The owner's own limits, e.g. 1000/minute;50000/day ('none' removes them).",
)
@quota_option
@quota_refill_option
@json_option
@click.pass_obj
def owners_set(
    op: Operator,
    name: str,
    rate_limit: str | None,
    quota: int | None,
    quota_refill: str | None,
    as_json: bool,
) -> None:
    """Set an owner's limits and quota, shared by all of its keys on top of each key's
    own; what is not given is kept. --quota N counts afresh from now (0 removes it)."""
    if rate_limit is None and quota is None:
        raise click.UsageError("give --rate-limit or --quota")
    if quota_refill is not None and not quota:
        raise click.UsageError("--quota-refill needs a --quota of at least 1")
    with owner_writes(op) as keys:
        limit = None if rate_limit is None else ("" if rate_limit == "none" else rate_limit)
        owner = keys.set_owner(name, rate_limit=limit, quota=quota, quota_refill=quota_refill)
        row = owner_row(owner, keys)
    emit(as_json, row, f"set owner {name}: {row['rate_limit'] or 'no limits'}", err=True)


@owners.command("show")
@click.argument("name")
@json_option
@click.pass_obj
def owners_show(op: Operator, name: str, as_json: bool) -> None:
    """Show an owner's limits, quota and number of keys."""
    keys = op.keys
    with operator_errors():
        owner = keys.store.get_owner(name)
        if owner is None:
            raise click.ClickException(f"no owner named {name}")
        row = owner_row(owner, keys)
    show_row(row, as_json)


@owners.command("list")
@json_option
@click.pass_obj
def owners_list(op: Operator, as_json: bool) -> None:
    """List the owners that have limits or a quota."""
    keys = op.keys
    with operator_errors():
        found = sorted(keys.store.owners(), key=lambda owner: owner.name)
        rows = [owner_row(owner, keys) for owner in found]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo("  ".join(cell(row[c]) for c in ("name", "rate_limit", "quota", "keys")))


@owners.command("unset")
@click.argument("name")
@click.pass_obj
def owners_unset(op: Operator, name: str) -> None:
    """Remove an owner's limits and quota (its keys keep naming it, and share nothing)."""
    with owner_writes(op) as keys:
        if not keys.unset_owner(name):
            raise click.ClickException(f"no owner named {name}")
    click.echo(f"unset owner {name}", err=True)


def main() -> None:
    cli(prog_name="guard")
