"""The Worker runtime: runs a handler per job, keeps its lease alive, acks
or retries with backoff, and stops gracefully — the C++ ``jobring::Worker``
(include/jobring/worker.hpp, lib/runtime/) in Python, behaviour for
behaviour:

  claim (waits without CPU until a job comes, or a stop)
    -> on_claim(job)
    -> handler(job) or handler(job, ctx) on a handler thread; meanwhile the
       Worker's heartbeat thread extends the lease every lease x extend_fraction
       (a third of the lease by default)
    -> returns None / Outcome.ack() / skip() / drop(): ack (the job is deleted)
       raises, or returns Outcome.retry(): release with backoff (Backoff:
       min(cap, base x 2^(attempt-1)) with jitter), the exception as the note
       a dead job keeps
       Outcome.retry_after(d): release with delay d
    -> on_done(job, report)

Lease extension changes the lease's token; the heartbeat and the handler's
thread share it under a lock, and the final ack / release uses the latest.
If an extension fails (the lease ran out and another worker took the job:
the heartbeat was starved for 2/3 of a lease, or the process was stopped),
``ctx.lease_lost`` turns true, on_lease_lost(job) is called, and the
handler's result is discarded.

Poison jobs: the dead state is the queue's. Create the queue with
``max_attempts=N``: a release on the job's N-th attempt dead-letters it with
its note (``jobring peek NAME --state dead``); ``ctx.last_attempt`` tells the
handler. Without max_attempts a failing job is retried for ever, at most
``cap`` apart.

Stopping: ``request_stop()`` (or SIGTERM / SIGINT after
``Worker.install_signal_handlers()``, or :func:`jobring.interrupt_waits`)
makes run() stop claiming. A job in hand gets ``grace`` seconds to finish:
``ctx.stopping`` turns true and ``ctx.sleep()`` returns early. When the grace
period runs out (or at once on ``stop_now()`` / a second signal) the
heartbeat releases the job with no delay (the attempt counts), ``ctx.abandoned``
turns true and on_abandon(job) is called. A thread cannot be killed, so the
handler runs on until it returns; its result is then discarded. A job claimed
as stop_now() came, before its handler started, is given back uncounted.

Threads: the handler runs on the thread that called run(), and on
``threads - 1`` more that run() starts and joins; one heartbeat thread per
Worker (while run() runs). Hooks on_claim, on_error and on_done run on the
handler's thread; on_lease_lost and on_abandon on the heartbeat thread
(keep them short). An exception escaping a hook is ignored.

The GIL: the heartbeat is a Python thread. A handler that holds the GIL for
a long time without letting go (a C extension that does not release it)
starves it; pure Python code and blocking I/O do not (Python switches threads
every few milliseconds). Keep leases well above such pauses.

Backend errors (a queue on Redis, ``url=``): any call can fail with
:class:`jobring.Unavailable`, :class:`jobring.Timeout`, ``ServerError`` or
``ProtocolError``, and whether it took effect is then unknown. The Worker
never gives up, spins or loses a job over one (as the C++ Worker): each
failed call is counted (``WorkerSummary.backend_errors``) and passed to
on_backend_error(BackendError) (default: a warning on the "jobring" logger)
with when it is tried again. A claim waits ``backend_retry`` (0.1 s doubling
to 5 s, jittered; cut short by a stop) and claims again; a failed extension
is not a lost lease: it is tried again until the lease's deadline, and only
then is the lease lost; the final ack / release is sent again until the
deadline (a repeat of a call that went through answers "lease lost" and
changes nothing), and if none got an answer the job's result is
``UNCONFIRMED``: it may have happened; if not, the job comes back when its
lease runs out. Shared memory never fails so.

Crash safety: the Worker keeps nothing in shared memory beyond the Queue
calls. If the process dies, its jobs in hand come back when their leases run
out (or at once through jobring-janitor). At-least-once: a job whose handler
finished but whose ack was not made runs again; make handlers idempotent.
"""

from __future__ import annotations

import inspect
import logging
import os
import random
import select
import signal
import threading
import time
import weakref
from ctypes import byref
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from . import _capi
from ._backoff import Backoff, Seconds, backoff_delay_ms, to_ms
from ._errors import Error, Interrupted, InvalidArgument, ProtocolError, ServerError, Timeout, Unavailable, error_for
from ._queue import Job, Queue, _claim_from, _error_text, _JobBuffer, _Stop, describe_exception

log = logging.getLogger("jobring")

# Set by the handlers of install_signal_handlers() (and interrupt_waits()):
# every Worker of the process reads them, as the C++ runtime's g_signals /
# g_stop_now / interrupt_requested().
_g_interrupted = False
_g_stop_now = False
_g_signals = 0
_running: "weakref.WeakSet[Worker]" = weakref.WeakSet()


def _note_interrupt() -> None:
    global _g_interrupted
    _g_interrupted = True
    for w in list(_running):
        w._wake()


def _clear_interrupt() -> None:
    global _g_interrupted, _g_stop_now, _g_signals
    _g_interrupted = False
    _g_stop_now = False
    _g_signals = 0


# ---------------------------------------------------------------------------
# What a handler decides, and what became of a job
# ---------------------------------------------------------------------------
class Outcome:
    """What a handler returns (None is :meth:`ack`)."""

    __slots__ = ("kind", "delay", "reason")

    ACK = "ack"
    SKIP = "skip"
    RETRY = "retry"
    RETRY_AFTER = "retry_after"
    DROP = "drop"

    def __init__(self, kind: str, delay: float = 0.0, reason: str = "") -> None:
        self.kind = kind
        self.delay = delay
        self.reason = reason

    @classmethod
    def ack(cls) -> "Outcome":
        """Done: ack (the job is deleted)."""
        return cls(cls.ACK)

    @classmethod
    def skip(cls) -> "Outcome":
        """Already done earlier (an idempotent consumer): ack, reported as skipped."""
        return cls(cls.SKIP)

    @classmethod
    def drop(cls) -> "Outcome":
        """Can never succeed: ack (deleted), reported as dropped."""
        return cls(cls.DROP)

    @classmethod
    def retry(cls, reason: str = "") -> "Outcome":
        """Failed: release with the Worker's backoff. ``reason`` is kept with
        the job if this was its last attempt (cut to 112 bytes)."""
        return cls(cls.RETRY, 0.0, reason)

    @classmethod
    def retry_after(cls, delay: Seconds, reason: str = "") -> "Outcome":
        """Failed: release with this delay (seconds; clamped to 0 .. 7 days; no jitter)."""
        ms = min(max(to_ms(delay), 0), _capi.MAX_LEASE_MS)
        return cls(cls.RETRY_AFTER, ms / 1000.0, reason)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Outcome)
            and (self.kind, self.delay, self.reason) == (other.kind, other.delay, other.reason)
        )

    def __hash__(self) -> int:
        return hash((self.kind, self.delay, self.reason))

    def __repr__(self) -> str:
        extra = f", {self.delay}" if self.kind == self.RETRY_AFTER else ""
        extra += f", {self.reason!r}" if self.reason else ""
        return f"Outcome.{self.kind}({extra.lstrip(', ')})"


# JobReport.result values.
ACKED = "acked"  # Outcome.ack, ack succeeded
SKIPPED = "skipped"  # Outcome.skip, ack succeeded
DROPPED = "dropped"  # Outcome.drop, ack succeeded
RETRIED = "retried"  # released with a delay (retry / retry_after / an exception)
DEAD = "dead"  # released on the last attempt: the queue dead-lettered it
LEASE_LOST = "lease_lost"  # the lease was lost: the result was discarded
ABANDONED = "abandoned"  # the grace period ran out (or stop_now): released by the heartbeat
# The final ack / release failed on the network (Redis) until the lease's
# deadline: it may have happened; if not, the job comes back then.
UNCONFIRMED = "unconfirmed"

# C statuses of a failed call to a queue's backend (Redis): the call's outcome is unknown.
_BACKEND_CODES = frozenset((_capi.E_UNAVAILABLE, _capi.E_TIMEOUT, _capi.E_PROTOCOL, _capi.E_SERVER))
_BACKEND_ERRORS = (Unavailable, Timeout, ProtocolError, ServerError)


@dataclass
class BackendError:
    """A call to the queue's backend that failed (on_backend_error's argument)."""

    queue: Queue  # the queue (a claim on several queues: the first)
    operation: str  # "claim", "extend", "ack", "release" or "give_back"
    error: Error  # Unavailable, Timeout, ServerError or ProtocolError, with its message
    job: Optional[Job] = None  # the job in hand; None for "claim"
    retry_in: float = 0.0  # seconds until the Worker tries again; 0: it does not


@dataclass
class JobReport:
    """How a job ended (on_done's second argument)."""

    result: str = ACKED  # ACKED, SKIPPED, DROPPED, RETRIED, DEAD, LEASE_LOST, ABANDONED or UNCONFIRMED
    outcome: Outcome = field(default_factory=Outcome.ack)  # what the handler returned (retry if it raised)
    delay: float = 0.0  # the release delay (RETRIED), seconds
    duration: float = 0.0  # seconds in the handler
    error: Optional[BaseException] = None  # the exception, if the handler raised


@dataclass
class WorkerSummary:
    """What run() did."""

    claimed: int = 0
    acked: int = 0
    skipped: int = 0
    dropped: int = 0
    retried: int = 0
    dead: int = 0
    lease_lost: int = 0
    abandoned: int = 0
    unconfirmed: int = 0
    errors: int = 0  # handler exceptions (each also counted as retried, dead or lost)
    backend_errors: int = 0  # failed backend calls (each passed to on_backend_error)
    stopped: bool = False  # run() returned because of a stop request

    def _add(self, other: "WorkerSummary") -> None:
        for name in (
            "claimed", "acked", "skipped", "dropped", "retried", "dead", "lease_lost", "abandoned", "unconfirmed",
            "errors", "backend_errors",
        ):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def _tally(self, result: str) -> None:
        setattr(self, result, getattr(self, result) + 1)


# ---------------------------------------------------------------------------
# Per handler thread
# ---------------------------------------------------------------------------
class _Slot:
    def __init__(self, rng_seed: int) -> None:
        # Owned by the slot's handler thread.
        self.buf: Optional[_JobBuffer] = None  # made on the handler's thread
        self.job: Optional[Job] = None
        self.rng = random.Random(rng_seed)
        self.counts = WorkerSummary()
        # Guarded by Worker._mu.
        self.active = False  # the heartbeat looks after the lease
        self.hook_pending = False  # the heartbeat is calling a hook with this job
        self.deadline = 0.0
        self.next_extend = 0.0
        # Written under _mu; read without it by JobContext.
        self.lost = False
        self.abandoned = False
        # The heartbeat's failed extensions of this slot's job in a row (under _mu).
        self.extend_failures = 0
        self.claim_failures = 0  # failed claims in a row (the handler thread's)


class JobContext:
    """What a two-argument handler gets besides the job. Valid during the
    handler call; its properties may be read from other threads."""

    __slots__ = ("_worker", "_slot", "_index", "job")

    def __init__(self, worker: "Worker", index: int, job: Job) -> None:
        self._worker = worker
        self._slot = worker._slots[index]
        self._index = index
        self.job = job

    @property
    def id(self) -> int:
        return self.job.id

    @property
    def key(self) -> Optional[str]:
        return self.job.key

    @property
    def attempt(self) -> int:
        return self.job.attempt

    @property
    def last_attempt(self) -> bool:
        """The queue dead-letters this job if this attempt fails (max_attempts)."""
        m = self._worker._served[self.job.incarnation][2]
        return m != 0 and self.job.attempt >= m

    @property
    def queue(self) -> Queue:
        """The queue the job came from (a Worker of several queues)."""
        return self.job.queue

    @property
    def stopping(self) -> bool:
        """A stop was requested: finish (or give up with Outcome.retry()) soon."""
        return self._worker._stopping()

    @property
    def lease_lost(self) -> bool:
        """The lease was lost: another worker may have the job; the result is discarded."""
        return self._slot.lost

    @property
    def abandoned(self) -> bool:
        """The grace period ran out: the job was released; the result is discarded."""
        return self._slot.abandoned

    @property
    def cancelled(self) -> bool:
        return self._slot.lost or self._slot.abandoned

    @property
    def lease(self) -> str:
        """The current lease as text (its token changes at every extension)."""
        with self._worker._mu:
            return self.job.lease

    @property
    def deadline(self) -> float:
        """When the current lease runs out (time.monotonic())."""
        with self._worker._mu:
            return self._slot.deadline

    @property
    def thread_index(self) -> int:
        """Which handler thread runs this job: 0 .. threads - 1."""
        return self._index

    def sleep(self, seconds: Seconds) -> bool:
        """Sleeps up to ``seconds``; returns False early when the job is
        cancelled or a stop is requested, True after the whole time."""
        w = self._worker
        until = time.monotonic() + to_ms(seconds) / 1000.0
        with w._sleep_cv:
            while True:
                if self.cancelled or self.stopping:
                    return False
                left = until - time.monotonic()
                if left <= 0:
                    return True
                # Bounded: a stop is also seen when its wake-up was missed.
                w._sleep_cv.wait(min(left, 0.25))


Handler = Callable[..., Optional[Outcome]]
Hook = Optional[Callable[..., Any]]


def _call_hook(hook: Hook, *args: Any) -> None:
    if hook is None:
        return
    try:
        hook(*args)
    except Exception:  # documented: an exception escaping a hook is ignored
        pass


def _takes_context(handler: Callable[..., Any]) -> bool:
    """Whether handler wants (job, ctx): it has two required positional parameters."""
    try:
        params = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(positional) >= 2


# ---------------------------------------------------------------------------
# Worker
# ---------------------------------------------------------------------------
class Worker:
    """Claims jobs from ``queue`` and runs ``handler`` on each until stopped.

    ``queue`` may be a list of queues (1 .. 64): strict priority in that
    order, or with ``weights`` (one per queue, 1 .. 1000) each claim picks
    among the queues that have jobs in proportion to their weights; with
    nothing to do it sleeps on all of them at once. ``ctx.queue`` (and
    ``job.queue``) is the job's queue; each job is acked, released and
    extended there, with that queue's lease and max_attempts. ``seed``
    repeats the same random draws (weights, backoff jitter).

    handler(job) or handler(job, ctx) (a :class:`JobContext`): return None
    (or an :class:`Outcome`) — the job is acked; raise — it is retried with
    backoff, the exception kept as its note if it dies.

    lease: per claim (None: the queue's default lease); extend_fraction:
    extend the lease every lease x this (0 < f < 1); backoff: the retry
    delays; grace: after a stop, how long a job in hand may take before it
    is released (0: at once; None or FOREVER: no limit); threads: jobs at
    once (1 .. 1024); max_jobs: return after this many claims (0: no limit);
    idle_exit: return when no job was in hand for this long (None: never);
    detached: the leases are not tied to this process. Hooks: on_claim(job),
    on_done(job, report), on_error(job, exc) (default: logged on the
    "jobring" logger with its traceback), on_lease_lost(job), on_abandon(job),
    on_backend_error(BackendError) (default: a warning on the "jobring"
    logger). backend_retry: the wait before a failed backend call (Redis) is
    tried again, base x 2^(failures-1) up to cap.
    """

    def __init__(
        self,
        queue: Union[Queue, Sequence[Queue]],
        handler: Handler,
        *,
        weights: Optional[Sequence[int]] = None,
        seed: Optional[int] = None,
        threads: int = 1,
        grace: Optional[Seconds] = 30.0,
        lease: Optional[Seconds] = None,
        extend_fraction: float = 1.0 / 3,
        backoff: Backoff = Backoff(),
        max_jobs: int = 0,
        idle_exit: Optional[Seconds] = None,
        detached: bool = False,
        on_claim: Hook = None,
        on_done: Hook = None,
        on_error: Hook = None,
        on_lease_lost: Hook = None,
        on_abandon: Hook = None,
        on_backend_error: Hook = None,
        backend_retry: Backoff = Backoff(base=0.1, cap=5.0),
    ) -> None:
        queues: List[Queue] = [queue] if isinstance(queue, Queue) else list(queue)
        for q in queues:
            if not isinstance(q, Queue):
                raise TypeError(f"a jobring.Queue, or a list of them, not {type(q).__name__}")
        names = ", ".join(f"'{q.name}'" for q in queues)

        def invalid(what: str) -> InvalidArgument:
            return InvalidArgument(f"jobring.Worker for queue{'s' if len(queues) > 1 else ''} {names}: {what}")

        if not 1 <= len(queues) <= 64:
            raise invalid("give 1 to 64 queues")
        if len({q.incarnation for q in queues}) != len(queues):
            raise invalid("a queue is given twice")
        if weights is not None:
            weights = list(weights)
            if len(weights) != len(queues) or not all(isinstance(w, int) and 1 <= w <= 1000 for w in weights):
                raise invalid("weights: one per queue, each from 1 to 1000")
        if not callable(handler):
            raise invalid("the handler is not callable")
        #: The first queue (the only one, for a one-queue Worker).
        self.queue = queues[0]
        #: Every queue served, in the order given (strict priority without weights).
        self.queues = queues
        self._weights = weights
        self._handler = handler
        self._with_context = _takes_context(handler)
        lease_ms = 0 if lease is None else to_ms(lease)
        if lease_ms < 0 or lease_ms > _capi.MAX_LEASE_MS or (lease is not None and lease_ms == 0):
            raise invalid("lease out of range (more than 0, at most 7 days)")
        if not (0.0 < extend_fraction < 1.0):
            raise invalid("extend_fraction must be in (0, 1)")
        # Per queue (by incarnation): the lease (lease=, or its default), the
        # interval between extensions, and its max_attempts.
        self._claim_lease_ms = lease_ms  # 0: each queue's default
        self._served: Dict[int, Tuple[int, float, int]] = {}
        for q in queues:
            q_lease = lease_ms if lease_ms > 0 else to_ms(q.options.lease)
            self._served[q.incarnation] = (
                q_lease,
                max(1, int(q_lease * extend_fraction)) / 1000.0,
                q.options.max_attempts,
            )
        if not isinstance(backoff, Backoff):
            raise invalid("backoff must be a jobring.Backoff")
        self._backoff = backoff
        if grace is None or grace == float("inf"):
            self._grace: Optional[float] = None  # no limit
        else:
            g = to_ms(grace)
            if g < 0:
                raise invalid("negative grace period")
            self._grace = g / 1000.0
        if idle_exit is None:
            self._idle_exit = 0.0
        else:
            ms = to_ms(idle_exit)
            if ms < 0 or ms > _capi.MAX_LEASE_MS:
                raise invalid("idle_exit out of range (0 .. 7 days)")
            self._idle_exit = ms / 1000.0
        if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 1024:
            raise invalid("threads must be from 1 to 1024")
        if max_jobs < 0:
            raise invalid("max_jobs must be >= 0")
        self._threads = threads
        self._max_jobs = max_jobs
        self._detached = detached
        self._hooks = {
            "on_claim": on_claim,
            "on_done": on_done,
            "on_error": on_error,
            "on_lease_lost": on_lease_lost,
            "on_abandon": on_abandon,
            "on_backend_error": on_backend_error,
        }
        if not isinstance(backend_retry, Backoff):
            raise invalid("backend_retry must be a jobring.Backoff")
        self._backend_retry = backend_retry
        self._hb_backend_errors = 0  # the heartbeat's (under _mu)
        seeds = random.Random(seed) if seed else random.SystemRandom()
        self._slots = [_Slot(seeds.getrandbits(64)) for _ in range(threads)]
        self._hb_rng = random.Random(seeds.getrandbits(64))  # the heartbeat's retry jitter

        # Heartbeat: _mu guards the slots' leases; _hooks_done is signalled
        # when a slot's hook_pending turns false; the pipe wakes the
        # heartbeat (written from signal handlers too: no lock taken).
        self._mu = threading.Lock()
        self._hooks_done = threading.Condition(self._mu)
        self._sleep_cv = threading.Condition(threading.Lock())  # ctx.sleep()
        self._shutdown = False
        self._stop_seen = False
        self._grace_end = 0.0
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        os.set_blocking(self._wake_r, False)

        # Stop requests (plain attribute writes: safe from a signal handler).
        self._stop = False
        self._now = False
        self._interrupted = False  # a claim ended with INTERRUPTED (interrupt_waits)
        self._stop_flag = _Stop()  # our claims' own stop flag

        # run().
        self._claim_mu = threading.Lock()  # one thread at a time waits in claim()
        self._claims = 0  # guarded by _claim_mu
        self._finished = False  # max_jobs reached, or idle for idle_exit
        self._busy = 0  # jobs in hand (under _busy_mu)
        self._busy_mu = threading.Lock()
        self._last_activity = time.monotonic()
        self._ran = False

    def __del__(self) -> None:
        for fd in (getattr(self, "_wake_r", -1), getattr(self, "_wake_w", -1)):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass

    # --- stop requests -----------------------------------------------------
    def _stop_now_requested(self) -> bool:
        return self._now or _g_stop_now

    def _stopping(self) -> bool:
        return self._stop or self._stop_now_requested() or _g_interrupted or self._interrupted

    def _wake(self) -> None:
        """Wakes the heartbeat (which wakes the sleepers). Signal-safe: no lock."""
        try:
            os.write(self._wake_w, b"\0")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (a wake-up is pending anyway) or closed

    def request_stop(self) -> None:
        """Stop claiming; jobs in hand get the grace period. Safe to call from
        a signal handler and from any thread. Stops this Worker only."""
        self._stop = True
        self._stop_flag.set(True)
        _capi.lib().jobring_wake_waits()  # our claims see the flag; others wait on
        self._wake()

    def stop_now(self) -> None:
        """Stop claiming and release the jobs in hand at once (their attempts
        count; a job claimed but not yet started is given back uncounted)."""
        self._now = True
        self.request_stop()

    @property
    def stop_requested(self) -> bool:
        return self._stopping()

    @staticmethod
    def install_signal_handlers(signals: Any = (signal.SIGTERM, signal.SIGINT)) -> None:
        """Installs handlers of SIGTERM and SIGINT (Ctrl-C) for the whole
        process: the first signal stops every Worker gracefully (as
        :func:`jobring.interrupt_waits`), the second releases their jobs in
        hand at once (stop_now). Call it from the main thread. Calling it
        again resets the signal count."""
        global _g_signals, _g_stop_now
        _g_signals = 0
        _g_stop_now = False
        for s in signals:
            signal.signal(s, _on_stop_signal)

    # --- heartbeat -----------------------------------------------------------
    def _tend(
        self,
        s: _Slot,
        t: float,
        release_all: bool,
        lost_now: List[_Slot],
        abandoned_now: List[_Slot],
        errors_now: List[BackendError],
    ) -> bool:
        """Looks after slot s at time t (under _mu): releases its job
        (release_all) or extends its lease when due. True if it still holds
        a lease to look after."""
        if not s.active or s.lost or s.abandoned:
            return False
        L = _capi.lib()
        assert s.job is not None
        h = s.job.queue._h()
        lease_ms, interval, _ = self._served[s.job.incarnation]
        if release_all:
            # Back to ready at once: another worker can take it. release, not
            # give_back: the attempt counts (a job that hangs its handler is
            # dead-lettered after max_attempts instead of cycling for ever).
            rc = L.jobring_release_lease(h, byref(s.job._lease), 0, None)
            if rc in _BACKEND_CODES:
                # Not retried: the job is abandoned either way (back now, or at its deadline).
                self._hb_backend_errors += 1
                errors_now.append(BackendError(s.job.queue, "release", error_for(rc, _capi.last_error()), s.job))
            if rc == _capi.OK or rc in _BACKEND_CODES:
                s.abandoned = True
                abandoned_now.append(s)
            else:
                s.lost = True
                lost_now.append(s)
            s.hook_pending = True
            return False
        if t >= s.next_extend:
            rc = L.jobring_extend_lease(h, byref(s.job._lease), lease_ms)  # updates the token
            if rc in _BACKEND_CODES and t < s.deadline:
                # Not a lost lease: it runs until its deadline. Try again, never past it.
                s.extend_failures += 1
                self._hb_backend_errors += 1
                retry = min(self._retry_in(s.extend_failures, self._hb_rng), max(0.001, s.deadline - t))
                errors_now.append(BackendError(s.job.queue, "extend", error_for(rc, _capi.last_error()), s.job, retry))
                s.next_extend = t + retry
                return True
            if rc != _capi.OK:
                if rc in _BACKEND_CODES:
                    self._hb_backend_errors += 1
                    errors_now.append(BackendError(s.job.queue, "extend", error_for(rc, _capi.last_error()), s.job))
                s.lost = True
                s.hook_pending = True
                lost_now.append(s)
                return False
            s.extend_failures = 0
            s.deadline = t + lease_ms / 1000.0
            s.job.deadline = s.deadline
            s.next_extend = t + interval
        return True

    def _call_lease_hooks(self, lost_now: List[_Slot], abandoned_now: List[_Slot]) -> None:
        for s in lost_now:
            _call_hook(self._hooks["on_lease_lost"], s.job)
        for s in abandoned_now:
            _call_hook(self._hooks["on_abandon"], s.job)
        with self._mu:
            for s in lost_now + abandoned_now:
                s.hook_pending = False
            self._hooks_done.notify_all()
        lost_now.clear()
        abandoned_now.clear()

    def _notify_sleepers(self) -> None:
        with self._sleep_cv:
            self._sleep_cv.notify_all()

    def _heartbeat_loop(self) -> None:
        lost_now: List[_Slot] = []
        abandoned_now: List[_Slot] = []
        errors_now: List[BackendError] = []
        stop_announced = False
        while True:
            sleep = 3600.0
            any_active = False
            with self._mu:
                if self._shutdown:
                    return
                t = time.monotonic()
                if self._stopping() and not self._stop_seen:
                    self._stop_seen = True
                    self._grace_end = float("inf") if self._grace is None else t + self._grace
                release_all = self._stop_now_requested() or (self._stop_seen and t >= self._grace_end)
                for s in self._slots:
                    if not self._tend(s, t, release_all, lost_now, abandoned_now, errors_now):
                        continue
                    any_active = True
                    sleep = min(sleep, s.next_extend - t)
                    if self._stop_seen and self._grace_end != float("inf"):
                        sleep = min(sleep, self._grace_end - t)
            if self._stop_seen and not stop_announced:
                stop_announced = True
                self._notify_sleepers()  # ctx.sleep() returns early, ctx.stopping is true
            for e in errors_now:
                self._report_backend_error(e)
            errors_now.clear()
            if lost_now or abandoned_now:
                self._notify_sleepers()
                self._call_lease_hooks(lost_now, abandoned_now)
                continue
            # While jobs are in hand, look at least every 200 ms (as the C++
            # heartbeat's kMaxSleep): a missed wake-up costs no more.
            cap = 0.2 if any_active else 3600.0
            try:
                select.select([self._wake_r], [], [], max(0.0, min(sleep, cap)))
            except InterruptedError:
                pass
            try:
                while os.read(self._wake_r, 512):
                    pass
            except (BlockingIOError, OSError):
                pass

    # --- handler threads -----------------------------------------------------
    def _loop(self, index: int) -> None:
        s = self._slots[index]
        if s.buf is None:
            s.buf = _JobBuffer()
        wait_default = 3600 * 1000
        while True:
            if self._stopping() or self._finished:
                return
            with self._claim_mu:  # idle threads wait here, not in claim()
                while True:
                    if self._stopping() or self._finished:
                        return
                    if self._max_jobs and self._claims >= self._max_jobs:
                        self._finished = True
                        return
                    wait_ms = wait_default
                    if self._idle_exit > 0:
                        if self._busy == 0:
                            left = self._last_activity + self._idle_exit - time.monotonic()
                            wait_ms = max(1, min(_capi.MAX_LEASE_MS, int(left * 1000 + 0.999)))
                        else:
                            wait_ms = int(self._idle_exit * 1000)
                    try:
                        job = _claim_from(
                            self._claim_order(s), s.buf, self._claim_lease_ms, wait_ms, self._detached, self._stop_flag
                        )
                        s.claim_failures = 0
                    except Interrupted:
                        # Our stop flag, or interrupt_waits() in this process: stopping() is now true.
                        if not self._stop:
                            self._interrupted = True
                            self._wake()
                        return
                    except _BACKEND_ERRORS as e:
                        # Nothing claimed (or a lease nobody holds: it comes
                        # back at its deadline). Wait, then claim again.
                        s.claim_failures += 1
                        s.counts.backend_errors += 1
                        retry = self._retry_in(s.claim_failures, s.rng)
                        self._report_backend_error(BackendError(self.queue, "claim", e, None, retry))
                        self._pause(retry)
                        job = None
                    if job is not None:
                        break
                    if (
                        self._idle_exit > 0
                        and self._busy == 0
                        and time.monotonic() - self._last_activity >= self._idle_exit
                    ):
                        self._finished = True
                        return
                self._claims += 1
                with self._busy_mu:
                    self._busy += 1  # before the next claimer's idle check
                self._last_activity = time.monotonic()
            try:
                self._handle(index, job)
            finally:
                self._last_activity = time.monotonic()
                with self._busy_mu:
                    self._busy -= 1

    # --- backend errors (Redis) -------------------------------------------------
    def _retry_in(self, failures: int, rng: random.Random) -> float:
        """Seconds before a failed backend call is tried again (backend_retry)."""
        return backoff_delay_ms(self._backend_retry, failures, rng.getrandbits(64)) / 1000.0

    def _report_backend_error(self, e: BackendError) -> None:
        hook = self._hooks["on_backend_error"]
        if hook is not None:
            _call_hook(hook, e)
            return
        job = f" (job {e.job.id})" if e.job is not None else ""
        then = f"trying again in {e.retry_in:.2f} s" if e.retry_in > 0 else "not tried again"
        log.warning(
            "jobring worker: queue '%s': %s%s failed: %s; %s (pass on_backend_error= to report these yourself)",
            e.queue.name, e.operation, job, e.error, then,
        )  # fmt: skip

    def _pause(self, seconds: float) -> None:
        """Sleeps up to ``seconds``; returns early at a stop request."""
        end = time.monotonic() + seconds
        with self._sleep_cv:
            while not self._stopping():
                left = end - time.monotonic()
                if left <= 0:
                    return
                self._sleep_cv.wait(min(left, 0.1))  # slices: a signal handler's flag is seen

    def _final_call(self, s: _Slot, operation: str, call: Callable[[], int]) -> Tuple[int, bool]:
        """The final ack / release: sent again after a backend error while the
        lease surely runs (before its deadline; not after stop_now()). A
        repeat is harmless: if the first went through, it answers "lease
        lost" and changes nothing. Returns the last status and whether any
        try failed on the backend."""
        assert s.job is not None
        failures = 0
        while True:
            rc = call()
            if rc not in _BACKEND_CODES:
                return rc, failures > 0
            failures += 1
            s.counts.backend_errors += 1
            error = error_for(rc, _capi.last_error())
            left = s.deadline - time.monotonic()
            retry = 0.0 if left <= 0 or self._stop_now_requested() else min(self._retry_in(failures, s.rng), left)
            self._report_backend_error(BackendError(s.job.queue, operation, error, s.job, retry))
            if retry <= 0:
                return rc, True
            end = time.monotonic() + retry
            while not self._stop_now_requested() and time.monotonic() < end:
                time.sleep(min(0.05, max(0.0, end - time.monotonic())))

    def _claim_order(self, s: _Slot) -> List[Queue]:
        """The queues to try, in order: as given (strict), or a weighted draw
        (each next queue with probability weight / weights left), so that
        among the queues with jobs each gets claims in proportion to its
        weight (as the C++ Worker)."""
        if self._weights is None or len(self.queues) == 1:
            return self.queues
        # Efraimidis-Spirakis: sorting by u ** (1 / w), u uniform in (0, 1],
        # gives the same distribution of orders in O(n log n).
        weights = self._weights
        keys: List[float] = [float((1.0 - s.rng.random()) ** (1.0 / weights[i])) for i in range(len(self.queues))]
        return [self.queues[i] for i in sorted(range(len(self.queues)), key=lambda i: -keys[i])]

    def _handle(self, index: int, job: Job) -> None:
        s = self._slots[index]
        s.counts.claimed += 1
        job._managed = True
        if self._stop_now_requested():
            # stop_now() came while we claimed: give the job back untouched.
            L = _capi.lib()
            ok = L.jobring_give_back_lease(job.queue._h(), byref(job._lease)) == _capi.OK
            r = JobReport(result=ABANDONED if ok else LEASE_LOST)
            s.counts._tally(r.result)
            _call_hook(self._hooks["on_claim"], job)
            _call_hook(self._hooks["on_abandon" if ok else "on_lease_lost"], job)
            _call_hook(self._hooks["on_done"], job, r)
            return
        with self._mu:
            s.job = job
            s.active = True
            s.deadline = job.deadline
            s.next_extend = time.monotonic() + self._served[job.incarnation][1]
            s.lost = False
            s.abandoned = False
        self._wake()  # the heartbeat recomputes its sleep
        _call_hook(self._hooks["on_claim"], job)

        outcome: Any = Outcome.retry()
        error: Optional[BaseException] = None
        t0 = time.monotonic()
        try:
            if self._with_context:
                outcome = self._handler(job, JobContext(self, index, job))
            else:
                outcome = self._handler(job)
            if outcome is None:
                outcome = Outcome.ack()
            elif not isinstance(outcome, Outcome):
                raise TypeError(
                    f"the handler returned {type(outcome).__name__}: return None or a jobring.Outcome"
                )
        except Exception as e:  # noqa: BLE001 - every failure of a handler is a retry
            error = e
        except BaseException as e:
            # KeyboardInterrupt / SystemExit on this thread (without
            # install_signal_handlers): stop now; the job goes back at once.
            self.stop_now()
            self._finish(s, Outcome.retry(describe_exception(e)), e, time.monotonic() - t0, interrupted=True)
            raise
        r = self._finish(s, outcome, error, time.monotonic() - t0)
        _call_hook(self._hooks["on_done"], job, r)

    def _end_lease(self, s: _Slot, outcome: Outcome, r: JobReport) -> None:
        """The handler's outcome, carried out on the job's current lease."""
        L = _capi.lib()
        assert s.job is not None
        h = s.job.queue._h()
        lease = s.job._lease
        if outcome.kind in (Outcome.ACK, Outcome.SKIP, Outcome.DROP):
            rc, failed = self._final_call(s, "ack", lambda: int(L.jobring_ack_lease(h, byref(lease))))
            if rc == _capi.OK:
                r.result = {Outcome.ACK: ACKED, Outcome.SKIP: SKIPPED, Outcome.DROP: DROPPED}[outcome.kind]
            else:
                r.result = UNCONFIRMED if failed else LEASE_LOST
            return
        if outcome.kind == Outcome.RETRY:
            delay_ms = backoff_delay_ms(self._backoff, s.job.attempt, s.rng.getrandbits(64))
        else:
            delay_ms = min(max(to_ms(outcome.delay), 0), _capi.MAX_LEASE_MS)
        # The queue dead-letters a release on the last attempt (attempts >=
        # max_attempts); attempts change only at a claim.
        max_attempts = self._served[s.job.incarnation][2]
        last = max_attempts != 0 and s.job.attempt >= max_attempts
        note = _error_text(outcome.reason)
        rc, failed = self._final_call(
            s, "release", lambda: int(L.jobring_release_lease(h, byref(lease), delay_ms, note))
        )
        if rc == _capi.OK:
            r.result = DEAD if last else RETRIED
            r.delay = 0.0 if last else delay_ms / 1000.0
        else:
            r.result = UNCONFIRMED if failed else LEASE_LOST

    def _report_error(self, job: Job, exc: BaseException) -> None:
        hook = self._hooks["on_error"]
        if hook is not None:
            _call_hook(hook, job, exc)
            return
        # Never retried in silence: the "jobring" logger (stderr with its
        # traceback if logging is not configured).
        log.error(
            "jobring worker: queue '%s': job %d (attempt %d) failed: %s (pass on_error= to report errors yourself)",
            job.queue.name,
            job.id,
            job.attempt,
            describe_exception(exc),
            exc_info=exc,
        )

    def _finish(
        self,
        s: _Slot,
        outcome: Outcome,
        error: Optional[BaseException],
        duration: float,
        interrupted: bool = False,
    ) -> JobReport:
        assert s.job is not None
        if error is not None and not interrupted:
            s.counts.errors += 1
            outcome = Outcome.retry(describe_exception(error))  # kept with a dead job
            self._report_error(s.job, error)
        with self._mu:
            while s.hook_pending:
                self._hooks_done.wait()
            s.active = False  # from here on the heartbeat leaves the lease alone
            lost, abandoned = s.lost, s.abandoned
        r = JobReport(outcome=outcome, duration=duration, error=error)
        if abandoned:
            r.result = ABANDONED  # released by the heartbeat; on_abandon called
        elif lost:
            r.result = LEASE_LOST  # on_lease_lost called
        elif interrupted:
            # Interrupted on this thread: back at once, the attempt counted
            # (as an abandoned job), with the reason.
            rc = _capi.lib().jobring_release_lease(s.job.queue._h(), byref(s.job._lease), 0, _error_text(outcome.reason))
            r.result = ABANDONED if rc == _capi.OK else LEASE_LOST
        else:
            self._end_lease(s, outcome, r)
            if r.result == LEASE_LOST:
                _call_hook(self._hooks["on_lease_lost"], s.job)
        s.counts._tally(r.result)
        return r

    # --- run -----------------------------------------------------------------
    def run(self) -> WorkerSummary:
        """Claims and handles jobs until a stop request, max_jobs or
        idle_exit; then waits for the jobs in hand (see the module's
        "Stopping") and returns a summary. Call it once."""
        if self._ran:
            raise Error("jobring.Worker.run() called twice: make a new Worker")
        self._ran = True
        self._last_activity = time.monotonic()
        _running.add(self)
        heartbeat = threading.Thread(target=self._heartbeat_loop, name=f"jobring-heartbeat-{self.queue.name}", daemon=True)
        heartbeat.start()
        extra: List[threading.Thread] = []
        try:
            for i in range(1, self._threads):
                t = threading.Thread(target=self._guarded_loop, args=(i,), name=f"jobring-worker-{i}", daemon=True)
                t.start()
                extra.append(t)
            self._loop(0)
        except BaseException:
            self.stop_now()  # e.g. KeyboardInterrupt: the other threads' jobs go back at once
            raise
        finally:
            for t in extra:
                while t.is_alive():
                    t.join(0.1)  # in slices: signal handlers run meanwhile
            with self._mu:
                self._shutdown = True
            self._wake()
            heartbeat.join()
            _running.discard(self)
        total = WorkerSummary()
        for s in self._slots:
            total._add(s.counts)
        total.backend_errors += self._hb_backend_errors
        total.stopped = self._stopping()
        return total

    def _guarded_loop(self, index: int) -> None:
        try:
            self._loop(index)
        except BaseException:  # a bug: stop the others rather than hang
            log.exception("jobring worker: queue '%s': handler thread %d failed", self.queue.name, index)
            self.stop_now()


def _on_stop_signal(signum: int, frame: Any) -> None:
    """SIGTERM / SIGINT after install_signal_handlers(): the first stops every
    Worker gracefully, the second releases their jobs at once."""
    global _g_signals, _g_stop_now, _g_interrupted
    _g_signals += 1
    if _g_signals >= 2:
        _g_stop_now = True
    _g_interrupted = True
    _capi.lib().jobring_interrupt_waits()  # wakes claims in every thread (async-signal-safe)
    for w in list(_running):
        w._wake()


__all__ = [
    "ABANDONED",
    "ACKED",
    "DEAD",
    "DROPPED",
    "LEASE_LOST",
    "RETRIED",
    "SKIPPED",
    "JobContext",
    "JobReport",
    "Outcome",
    "Worker",
    "WorkerSummary",
]

