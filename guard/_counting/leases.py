"""Quota leases on Redis: a key's requests are counted in process, and no limit is ever
exceeded.

A process with no units for a key's current windows takes a lease in one script call
(``lua/lease.lua``): the script grants at most what every window of the key has left
(``100/minute;10000/day`` together), adds the grant to the same counters the limits
use, and answers the grant and each window's reset. Requests then spend the lease here,
with no round trip.

Guarantees:

- **Never over the limit.** Every unit spent was granted by Redis out of a window's
  remainder and added to its counter first, and a unit is only spent before its window
  ends: the lease's deadline is the time the script was *sent* plus the time it said was
  left (less a clock drift of :data:`CLOCK_DRIFT`), never later than the counter's own
  expiry.
- **Close to the limit.** A grant is the remainder divided by ``k·W`` (:data:`SHARE`
  is k, W the processes that took a lease for the key within :data:`HOLDERS_HORIZON`),
  never below one unit: as a window fills, grants shrink to single units, so each of W
  processes holds at most one unit unspent at the end of a window that was driven to
  its limit. Units never spent go back to their window after :data:`IDLE` seconds
  unused and when the process exits, unless the window has ended since (``lua/give_back.lua``).
- **Reset reaches every process.** A window found full is refused in process for
  :data:`RECHECK` seconds, then asked of Redis again: counters cleared meanwhile
  (``guard keys reset-limits``) or given units back admit requests again within that
  second, and a key over its limit costs each process one round trip a second, not one
  a request. Units a process already holds are its own until spent or given back: after
  a reset, the new window admits those on top of its limit.
- **Fail closed.** A lease already granted is quota Redis has counted: it is spent while
  Redis is down. With no units left, a request that cannot reach Redis raises
  ``limits``' StorageError, as it did before leases.

A lease half spent is refilled by a background thread (one per process, started when
a lease exists and ended when none does), so that at steady state no request waits
for Redis; the first request of a window, or one that finds its lease drained, waits
for one round trip. A process forked from one holding leases starts with none: the
parent's units are the parent's. Thread-safe, and gevent-safe: the table's lock is never
held across a round trip.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import os
import queue
import socket
import threading
import time
import weakref
from collections.abc import Callable
from importlib import resources
from typing import Any

import limits.errors
import redis

from guard._counting.direct_script import DirectScript
from guard._counting.plan import Hit, Plan, Reply, Window

logger = logging.getLogger("guard.errors")

LEASE_LUA = (resources.files(__package__) / "lua" / "lease.lua").read_bytes()
GIVE_BACK_LUA = (resources.files(__package__) / "lua" / "give_back.lua").read_bytes()

#: k: a grant is the remainder over k times the processes taking leases for the key.
SHARE = 4
#: Seconds a process counts among those taking a key's leases after its last one.
HOLDERS_HORIZON = 10
#: Seconds a lease may sit unspent before its units go back to the window.
IDLE = 5.0
#: How much faster Redis's clock may run than this process's: a lease's deadline comes
#: this fraction of its window early.
CLOCK_DRIFT = 0.001
#: Seconds between the background thread's looks for idle and ended leases.
TICK = 0.5
#: Seconds a full window's requests are refused in process before one asks Redis again:
#: its counters may have been cleared (``guard keys reset-limits``) or given units back.
RECHECK = 1.0

#: A job for the background thread (what it returns is not used).
Job = Callable[[], object]


class _Lease:
    """Units of one key's current windows, granted to this process (under the lock)."""

    __slots__ = (
        "counts",
        "deadline",
        "ends",
        "exhausted",
        "plan",
        "recheck",
        "refilling",
        "resets",
        "size",
        "units",
        "used",
    )

    def __init__(
        self,
        plan: Plan,
        grant: int,
        counts: tuple[int, ...],
        resets: tuple[float, ...],
        ends: tuple[int, ...],
        now: float,
    ) -> None:
        self.plan = plan
        self.units = grant
        self.size = grant
        #: Each window's count on Redis when it last answered, this lease's units in it.
        self.counts = counts
        #: When each window ends, on this process's monotonic clock (never late).
        self.resets = resets
        #: When each window ends, on the server's clock (ms): what a give-back checks.
        self.ends = ends
        #: No unit may be spent from this moment on: the first window has ended.
        self.deadline = min(resets)
        #: The last grant was nothing: a window is full until ``deadline``, as far as
        #: this process knows until ``recheck``.
        self.exhausted = grant == 0
        self.recheck = now + RECHECK
        self.refilling = False
        self.used = now

    def same_windows(self, ends: tuple[int, ...]) -> bool:
        # The next window of a counter ends at least a second after this one.
        return len(ends) == len(self.ends) and all(
            abs(a - b) < 500 for a, b in zip(ends, self.ends, strict=True)
        )

    def spent(self, plan: Plan, now: float) -> tuple[Window, ...]:
        """The windows as this process knows them, after one unit was spent."""
        return tuple(
            Window(
                limit.policy,
                limit.item,
                max(0, limit.amount - count + self.units),
                max(0, math.ceil(reset - now)),
                True,
                limit.quota,
            )
            for limit, count, reset in zip(plan, self.counts, self.resets, strict=True)
        )

    def refused(self, plan: Plan, now: float) -> tuple[Window, ...]:
        """The windows of a request refused: the last grant was nothing, so at least
        one window was full (its count at its amount)."""
        return tuple(
            Window(
                limit.policy,
                limit.item,
                max(0, limit.amount - count),
                max(0, math.ceil(reset - now)),
                count < limit.amount,
                limit.quota,
            )
            for limit, count, reset in zip(plan, self.counts, self.resets, strict=True)
        )


class Leases:
    """A process's leases of its keys' windows on one Redis (server or Sentinel service).

    :meth:`count` is a :data:`~guard._counting.plan.Hit`: one request counted under every
    limit of a plan, never over any of them (see the module's docstring).
    """

    def __init__(
        self,
        client: redis.Redis,
        base_exceptions: type[Exception] | tuple[type[Exception], ...],
    ) -> None:
        # A request waiting for a lease sends it on the connection its thread keeps
        # (guard._counting.direct_script); the background thread's refills and
        # give-backs are rare and off any request's path, so they go through redis-py's
        # Script, a pool connection each time: that thread holds none while it waits.
        self._lease = DirectScript(client, LEASE_LUA)
        self._refill_script = client.register_script(LEASE_LUA)
        self._give_back = client.register_script(GIVE_BACK_LUA)
        self._errors = base_exceptions
        self._clock = time.monotonic
        self._lock = threading.Lock()
        self._table: dict[str, _Lease] = {}
        self._jobs: queue.Queue[Job] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._take: Hit = self._wait_for_lease
        _LIVE.add(self)

    def count(self, plan: Plan) -> Reply:
        """Count one request under every limit of ``plan``: from this process's lease
        when it has units, else after one round trip for a new one."""
        name = _name(plan)
        now = self._clock()
        windows: tuple[Window, ...] | None = None
        refill = False
        with self._lock:
            lease = self._table.get(name)
            if lease is not None and now < lease.deadline:
                if lease.units > 0:
                    lease.units -= 1
                    lease.used = now
                    windows = lease.spent(plan, now)
                    # Half spent: ask for more before it runs out, off this request's path.
                    refill = (
                        not lease.refilling and lease.size > 1 and lease.units <= lease.size // 2
                    )
                    lease.refilling = lease.refilling or refill
                elif lease.exhausted and now < lease.recheck:
                    windows = lease.refused(plan, now)
        if windows is not None:
            if refill:
                self._submit(lambda: self._refill(name, plan))
            done = windows
            return lambda: done
        return self._take(plan)

    def observe(self, wrap: Callable[[Hit], Hit]) -> None:
        """Put ``wrap`` around every request's wait for a lease (the round trips; the
        metrics time and count them), not around the units spent in process."""
        self._take = wrap(self._take)

    def _wait_for_lease(self, plan: Plan) -> Reply:
        """A request's own round trip for a lease of ``plan``'s windows: sent now, and
        one unit spent (or the request refused) when its reply is read."""
        name = _name(plan)
        now = self._clock()
        try:
            read = self._send(plan)
        except self._errors as exc:
            raise limits.errors.StorageError(exc) from exc

        def reply() -> tuple[Window, ...]:
            nonlocal read, now
            try:
                windows = self._granted(name, plan, read(), now, spend=True)
                if windows is None:  # the window ended on the way: once more, in the next
                    now = self._clock()
                    read = self._send(plan)
                    windows = self._granted(name, plan, read(), now, spend=True)
            except self._errors as exc:
                raise limits.errors.StorageError(exc) from exc
            if windows is None:
                # Two windows ended under two round trips: only a clock gone wild does
                # that. Refused, never counted without a grant.
                raise limits.errors.StorageError(RuntimeError("no lease could be taken"))
            return windows

        return reply

    def close(self) -> None:
        """Give every unit this process holds back to its window (at exit: a process
        that stops does not sit on quota)."""
        with self._lock:
            held = list(self._table.items())
            self._table.clear()
        for _, lease in held:
            if not self._return(lease):
                return  # Redis is not answering: the rest would wait as long, in vain

    def _send(self, plan: Plan) -> Callable[[], Any]:
        return self._lease.send(*_lease_call(plan))

    def _granted(
        self, name: str, plan: Plan, answer: Any, sent: float, *, spend: bool
    ) -> tuple[Window, ...] | None:
        """Merge a grant into the table, and spend one unit for the request that waited
        for it (``spend``; ``None`` if the window ended while the grant travelled, so
        there is nothing to spend or to refuse on); a refill only adds."""
        grant, server_now = int(answer[0]), int(answer[1])
        counts = tuple(int(answer[2 + 2 * n]) for n in range(len(plan)))
        ttls = tuple(int(answer[3 + 2 * n]) for n in range(len(plan)))
        # From when the script was sent (Redis counted the time left no earlier), less
        # what two clocks slewed by NTP (500 ppm each at most) can drift apart meanwhile.
        resets = tuple(sent + ttl * (1 - CLOCK_DRIFT) / 1000 for ttl in ttls)
        ends = tuple(server_now + ttl for ttl in ttls)
        now = self._clock()
        stale = None
        windows = None
        with self._lock:
            lease = self._table.get(name)
            if lease is not None and lease.same_windows(ends):
                lease.units += grant
                lease.size = grant or lease.size
                lease.counts = counts
                lease.resets = tuple(max(a, b) for a, b in zip(lease.resets, resets, strict=True))
                lease.deadline = min(lease.resets)
                lease.exhausted = grant == 0
                lease.recheck = now + RECHECK
            elif lease is not None and min(ends) < min(lease.ends):
                # Sent before a window ended, answered after this process took a lease
                # of the next one: these units go back.
                stale = _Lease(plan, grant, counts, resets, ends, now)
            else:
                stale = lease
                lease = self._table[name] = _Lease(plan, grant, counts, resets, ends, now)
            if not spend:
                lease.refilling = False
            elif now < lease.deadline and lease.units > 0:
                lease.units -= 1
                lease.used = now
                windows = lease.spent(plan, now)
            elif now < lease.deadline and lease.exhausted:
                windows = lease.refused(plan, now)
        if stale is not None and stale.units > 0:
            self._submit(lambda: self._return(stale))
        else:
            self._start()
        return windows

    def _refill(self, name: str, plan: Plan) -> None:
        sent = self._clock()
        try:
            keys, args = _lease_call(plan)
            self._granted(name, plan, self._refill_script(keys, args), sent, spend=False)
        except Exception as exc:
            # The next request that finds the lease drained asks in its turn (and fails
            # closed there if Redis is still down).
            logger.warning("guard: refilling a rate-limit lease failed: %r", exc)
            with self._lock:
                lease = self._table.get(name)
                if lease is not None:
                    lease.refilling = False

    def _return(self, lease: _Lease) -> bool:
        """Give ``lease``'s unspent units back (it is out of the table already); whether
        Redis answered."""
        plan = lease.plan
        if lease.units <= 0:
            return True
        keys = [limit.key for limit in plan]
        args: list[Any] = []
        for end in lease.ends:
            args += (lease.units, end)
        try:
            self._give_back(keys, args)
        except Exception as exc:
            # Units not given back are only unused: the window admits less, never more.
            logger.warning("guard: giving back a rate-limit lease failed: %r", exc)
            return False
        return True

    def _sweep(self) -> None:
        """Take ended and idle leases out of the table, giving their units back. An
        exhausted lease with nothing left stays until its window ends: it is the
        refusal this process gives without asking Redis again."""
        now = self._clock()
        out = []
        with self._lock:
            for name, lease in list(self._table.items()):
                idle = now - lease.used > IDLE and (lease.units > 0 or not lease.exhausted)
                if now >= lease.deadline or idle:
                    out.append(lease)
                    del self._table[name]
        for lease in out:
            self._return(lease)

    def _submit(self, job: Job) -> None:
        self._jobs.put(job)
        self._start()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=_work, args=(weakref.ref(self),), name="guard-leases", daemon=True
                )
                self._thread.start()

    def _forked(self) -> None:
        # The parent's units are the parent's: spending them here too would double them.
        self._lock = threading.Lock()
        self._table.clear()
        self._jobs = queue.Queue()
        self._thread = None


def _work(ref: weakref.ref[Leases]) -> None:
    """The background thread: refills and give-backs as they come, idle leases swept
    every :data:`TICK`; it ends once no lease is left, holding its leases only weakly."""
    next_sweep = 0.0
    while True:
        leases = ref()
        if leases is None:
            return
        jobs = leases._jobs
        del leases
        try:
            job: Job | None = jobs.get(timeout=TICK)
        except queue.Empty:
            job = None
        leases = ref()
        if leases is None:
            return
        if job is not None:
            job()
        if time.monotonic() >= next_sweep:
            next_sweep = time.monotonic() + TICK
            leases._sweep()
            with leases._lock:
                # Under the lock: whoever adds a lease or a job after this starts a thread.
                if not leases._table and jobs.empty():
                    leases._thread = None
                    return
        del leases


def _name(plan: Plan) -> str:
    """The table's key for ``plan``'s windows."""
    return plan[0].key if len(plan) == 1 else "\n".join(limit.key for limit in plan)


def _lease_call(plan: Plan) -> tuple[list[str], list[Any]]:
    """The keys and arguments of ``lua/lease.lua`` for ``plan``."""
    keys = [limit.key for limit in plan]
    keys.append(plan[0].key + "/holders")
    args: list[Any] = [_holder(), SHARE, HOLDERS_HORIZON]
    for limit in plan:
        args += (limit.expiry, limit.amount)
    return keys, args


_HOST = socket.gethostname()


def _holder() -> str:
    """This process, among those taking leases for a key."""
    return f"{_HOST}:{os.getpid()}"


#: Every live lease table, for the fork and exit hooks (weakly: an app's goes with it).
_LIVE: weakref.WeakSet[Leases] = weakref.WeakSet()


def _after_fork() -> None:
    for leases in list(_LIVE):
        leases._forked()


def _at_exit() -> None:
    for leases in list(_LIVE):
        with contextlib.suppress(Exception):
            leases.close()


os.register_at_fork(after_in_child=_after_fork)
atexit.register(_at_exit)
