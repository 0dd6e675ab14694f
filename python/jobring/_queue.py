"""Queue and Job: the C API's queue calls, the Pythonic way."""

from __future__ import annotations

import ctypes
import os
import random
import threading
import time
from ctypes import byref, c_int, c_size_t, c_uint64, c_void_p
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, Type, Union

from . import _capi
from ._backoff import FOREVER, Backoff, Seconds, backoff_delay_ms, seconds_of, to_ms
from ._errors import Error, Interrupted, InvalidArgument, LeaseLost, QueueFull, raise_for

if TYPE_CHECKING:
    from types import TracebackType

Payload = Union[bytes, bytearray, memoryview, str]
Key = Union[str, bytes]

# On the main thread, waits are made of slices this long: between two, Python
# runs its signal handlers, so Ctrl-C (KeyboardInterrupt) and the handlers of
# Worker.install_signal_handlers() act within a slice. Other threads, where
# Python runs no signal handler, wait in one call.
_SLICE_MS = 100

_STATES = {
    "ready": _capi.STATE_READY,
    "delayed": _capi.STATE_DELAYED,
    "leased": _capi.STATE_LEASED,
    "dead": _capi.STATE_DEAD,
}
_STATE_NAMES = {v: k for k, v in _STATES.items()}
_PURGE = {
    "ready": _capi.PURGE_READY,
    "delayed": _capi.PURGE_DELAYED,
    "dead": _capi.PURGE_DEAD,
    "all": _capi.PURGE_ALL,
}


# ---------------------------------------------------------------------------
# Argument conversion
# ---------------------------------------------------------------------------
def _wait_ms(wait: Optional[Seconds]) -> int:
    """None / 0: no wait; FOREVER (math.inf): -1; else 0 .. 7 days in ms."""
    if wait is None:
        return 0
    ms = to_ms(wait)
    if ms == _capi.MAX_LEASE_MS + 1:
        return -1  # infinity
    if ms < 0 or ms > _capi.MAX_LEASE_MS:
        raise InvalidArgument(f"wait of {seconds_of(wait)} s: use None (no wait), 0 .. 7 days, or jobring.FOREVER")
    return ms


def _delay_ms(delay: Optional[Seconds]) -> int:
    if delay is None:
        return 0
    ms = to_ms(delay)
    if ms < 0 or ms > _capi.MAX_LEASE_MS:
        raise InvalidArgument(f"delay of {seconds_of(delay)} s: use 0 .. 7 days")
    return ms


def _lease_ms(lease: Seconds, what: str = "lease") -> int:
    ms = to_ms(lease)
    if ms < 1 or ms > _capi.MAX_LEASE_MS:
        raise InvalidArgument(f"{what} of {seconds_of(lease)} s: use more than 0, at most 7 days")
    return ms


def _payload_bytes(payload: Payload) -> bytes:
    if isinstance(payload, str):
        return payload.encode("utf-8")
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(payload)
    raise TypeError(f"a payload is bytes or str, not {type(payload).__name__}")


def _key_bytes(key: Optional[Key]) -> Optional[bytes]:
    if key is None:
        return None
    b = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    if len(b) > _capi.MAX_KEY_LENGTH:
        raise InvalidArgument(f"key of {len(b)} bytes: at most {_capi.MAX_KEY_LENGTH}")
    return b


def _error_text(error: Optional[str]) -> Optional[bytes]:
    """A release's error note: UTF-8 without NULs (the library cuts it to
    112 bytes on a character boundary)."""
    if error is None:
        return None
    return str(error).replace("\0", " ").encode("utf-8", "replace")


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def wait_in_slices(call: Callable[[int], int], wait_ms: int, ran_out: int) -> int:
    """Runs ``call(ms)``, a C call that waits up to ms (-1: for ever) and
    returns ``ran_out`` when its wait ends with nothing. On the main thread
    the wait is cut into slices so that signal handlers run between them
    (Ctrl-C raises KeyboardInterrupt within a slice)."""
    if wait_ms == 0 or not _on_main_thread():
        return call(wait_ms)
    deadline = None if wait_ms < 0 else time.monotonic() + wait_ms / 1000.0
    while True:
        if deadline is None:
            step = _SLICE_MS
        else:
            left = int((deadline - time.monotonic()) * 1000.0 + 0.999)
            step = max(0, min(_SLICE_MS, left))
        rc = call(step)
        if rc != ran_out or step == 0:
            return rc
        if deadline is not None and time.monotonic() >= deadline:
            return rc


class _JobBuffer:
    """A jobring_job: claims fill it (one thread's at a time)."""

    __slots__ = ("ptr", "_free")

    def __init__(self) -> None:
        L = _capi.lib()
        p = c_void_p()
        rc = L.jobring_job_new(byref(p))
        if rc != _capi.OK:
            raise_for(rc)
        self.ptr = p
        self._free = L.jobring_job_free

    def lease(self) -> Tuple[int, int, int]:
        out = _capi.jobring_lease()
        _capi.lib().jobring_job_lease(self.ptr, byref(out))
        return (out.job, out.slot, out.token)

    def __del__(self) -> None:
        free = getattr(self, "_free", None)
        if free is not None:
            free(self.ptr)


class _Stop:
    """A jobring_stop: a flag that ends the waits given it."""

    __slots__ = ("ptr", "_free")

    def __init__(self) -> None:
        L = _capi.lib()
        p = c_void_p()
        rc = L.jobring_stop_new(byref(p))
        if rc != _capi.OK:
            raise_for(rc)
        self.ptr = p
        self._free = L.jobring_stop_free

    def set(self, value: bool = True) -> None:
        _capi.lib().jobring_stop_set(self.ptr, 1 if value else 0)

    def __del__(self) -> None:
        free = getattr(self, "_free", None)
        if free is not None:
            free(self.ptr)


# ---------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------
class JobId(int):
    """A pushed job's id (an int). ``duplicate`` is True when the push's key
    named a job already in the queue (or acked within the de-duplication
    window): nothing was added, and this is that job's id."""

    duplicate: bool

    def __new__(cls, value: int, duplicate: bool = False) -> "JobId":
        self = super().__new__(cls, value)
        self.duplicate = duplicate
        return self


_SYNC_NAMES = ("none", "interval", "always")  # jobring_options.sync, by value


@dataclass(frozen=True)
class QueueOptions:
    """A queue's stored options (durations in seconds)."""

    capacity: int
    max_payload: int
    lease: float
    max_attempts: int
    mode: int
    dedup_keys: int
    dedup_window: float
    sync: str = "none"  # a file-backed queue's sync policy: "none", "interval" or "always"
    sync_interval: float = 1.0


@dataclass(frozen=True)
class JobInfo:
    """One job as :meth:`Queue.peek` sees it (durations in seconds)."""

    id: int
    state: str  # "ready", "delayed", "leased" or "dead"
    slot: int
    attempts: int
    owner_pid: int  # leased, owned by a process: its PID; else 0
    until: float  # delayed: until visible; leased: until the deadline (negative: expired)
    enqueued_ago: float
    failed_ago: Optional[float]  # dead: how long ago it died
    error: str  # dead: why (the note given to release, or the queue's own)
    payload: bytes  # its first bytes (peek's payload_bytes), or all of it
    payload_length: int  # its whole length

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", "replace")


@dataclass(frozen=True)
class MoveResult:
    """What :meth:`Queue.move_dead` did."""

    moved: int  # jobs now in the target and gone from the source
    too_large: int  # jobs left in the source: larger than the target's max_payload
    left: int  # jobs left in the source for now: being moved by another mover, or quarantined
    target_full: bool  # the move stopped: the target had no room


class Job:
    """A claimed job. ``payload`` is its bytes, ``text`` the same decoded as
    UTF-8; ``attempt`` is 1 on its first claim; ``key`` its de-duplication
    key (or None).

    As a context manager (``with queue.claim(...) as job:``) it is acked when
    the block ends normally, and released when it raises: after an Exception
    with the default :class:`Backoff` delay (0.5-1 s, then 1-2 s, ...; never
    sooner than half) and the exception as the note a dead job keeps; after a
    KeyboardInterrupt / SystemExit at once. Nothing is done if the block
    acked or released the job itself.
    """

    __slots__ = (
        "queue", "id", "payload", "attempt", "key", "incarnation", "deadline",
        "_lease", "_finished", "_managed", "__weakref__",
    )  # fmt: skip

    def __init__(self, queue: "Queue", buf: _JobBuffer, lease_s: float) -> None:
        L = _capi.lib()
        n = c_size_t()
        p = L.jobring_job_payload(buf.ptr, byref(n))
        self.queue = queue
        self.id: int = L.jobring_job_id(buf.ptr)
        self.payload: bytes = ctypes.string_at(p, n.value) if n.value else b""
        self.attempt: int = L.jobring_job_attempt(buf.ptr)
        k = L.jobring_job_key(buf.ptr, byref(n))
        self.key: Optional[str] = ctypes.string_at(k, n.value).decode("utf-8", "replace") if n.value else None
        self.incarnation: int = L.jobring_job_incarnation(buf.ptr)
        self._lease = _capi.jobring_lease()
        L.jobring_job_lease(buf.ptr, byref(self._lease))
        #: When the lease runs out (time.monotonic()), as this process knows it.
        self.deadline: float = time.monotonic() + lease_s
        self._finished = False
        self._managed = False

    @property
    def text(self) -> str:
        """The payload decoded as UTF-8 (invalid bytes replaced)."""
        return self.payload.decode("utf-8", "replace")

    @property
    def lease(self) -> str:
        """The current lease as text ("job.slot.token"); it changes at every extend."""
        buf = ctypes.create_string_buffer(_capi.LEASE_TEXT_SIZE)
        _capi.lib().jobring_lease_format(byref(self._lease), buf, _capi.LEASE_TEXT_SIZE)
        return buf.value.decode()

    def ack(self) -> None:
        """:meth:`Queue.ack` of this job."""
        self.queue.ack(self)

    def release(self, delay: Optional[Seconds] = 0, error: Optional[str] = None) -> None:
        """:meth:`Queue.release` of this job."""
        self.queue.release(self, delay, error=error)

    def give_back(self) -> None:
        """:meth:`Queue.give_back` of this job."""
        self.queue.give_back(self)

    def extend(self, lease: Seconds) -> None:
        """:meth:`Queue.extend` of this job."""
        self.queue.extend(self, lease)

    def __enter__(self) -> "Job":
        if self._managed:
            raise Error("a Worker's job is acked or released by the Worker when the handler returns: no `with`")
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional["TracebackType"],
    ) -> None:
        if self._finished:
            return
        if exc_type is None:
            self.queue.ack(self)  # LeaseLost if the lease ran out meanwhile
            return
        try:
            if issubclass(exc_type, Exception):
                delay_ms = backoff_delay_ms(Backoff(), self.attempt, random.getrandbits(64))
                self.queue.release(self, delay_ms / 1000.0, error=describe_exception(exc))
            else:
                self.queue.release(self, 0, error=f"interrupted ({exc_type.__name__})")
        except LeaseLost:
            pass  # not ours any more: the original exception goes on

    def __repr__(self) -> str:
        return f"<jobring.Job {self.id} attempt {self.attempt} of {self.queue.name!r}: {self.payload[:40]!r}>"


def describe_exception(exc: Optional[BaseException]) -> str:
    """"ValueError: the message" (the note a dead job keeps)."""
    if exc is None:
        return "failed"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---------------------------------------------------------------------------
# Queue
# ---------------------------------------------------------------------------
class Queue:
    """An open queue. Make one with :meth:`create`, :meth:`open` or
    :meth:`open_or_create`; :meth:`close` it (or use ``with``) when done.

    A Queue may be used from many threads at once. Durations are seconds
    (int, float or datetime.timedelta). Blocking calls (a push or claim with
    ``wait``) release the GIL; on the main thread Ctrl-C interrupts them.
    """

    def __init__(self, handle: c_void_p, name: str) -> None:
        """Internal: use :meth:`create`, :meth:`open` or :meth:`open_or_create`."""
        self._handle: Optional[c_void_p] = handle
        # The library's name for it: "DIR/NAME" for a queue created with dir=.
        real = _capi.lib().jobring_queue_name(handle)
        self._name: str = real.decode("utf-8") if isinstance(real, bytes) else name
        self._local = threading.local()
        o = _capi.jobring_options()
        o.size = ctypes.sizeof(o)
        rc = _capi.lib().jobring_queue_options(handle, byref(o))
        if rc != _capi.OK:
            raise_for(rc)
        self._options = QueueOptions(
            capacity=o.capacity,
            max_payload=o.max_payload,
            lease=o.default_lease_ms / 1000.0,
            max_attempts=o.max_attempts,
            mode=o.mode,
            dedup_keys=o.dedup_keys,
            dedup_window=o.dedup_window_ms / 1000.0,
            sync=_SYNC_NAMES[o.sync] if o.sync < len(_SYNC_NAMES) else str(o.sync),
            sync_interval=o.sync_interval_ms / 1000.0,
        )

    # --- lifecycle -------------------------------------------------------
    @staticmethod
    def _c_options(
        capacity: Optional[int],
        max_payload: Optional[int],
        lease: Optional[Seconds],
        max_attempts: Optional[int],
        mode: Optional[int],
        group: Optional[str],
        dedup_keys: Optional[int],
        dedup_window: Optional[Seconds],
        dir: Optional[str] = None,
        sync: Optional[str] = None,
        sync_interval: Optional[Seconds] = None,
    ) -> Tuple[_capi.jobring_options, Tuple[Optional[bytes], Optional[bytes]]]:
        o = _capi.jobring_options()
        _capi.lib().jobring_options_init(byref(o), ctypes.sizeof(o))
        group_b = group.encode() if group else None

        def u32(value: int, what: str) -> int:
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
                raise InvalidArgument(f"{what} must be an int from 0 to 2**32-1, not {value!r}")
            return value

        if capacity is not None:
            o.capacity = u32(capacity, "capacity")
        if max_payload is not None:
            o.max_payload = u32(max_payload, "max_payload")
        if lease is not None:
            o.default_lease_ms = _lease_ms(lease, "default lease")
        if max_attempts is not None:
            o.max_attempts = u32(max_attempts, "max_attempts")
        if mode is not None:
            o.mode = u32(mode, "mode")
        o.group = group_b
        if dedup_keys is not None:
            o.dedup_keys = u32(dedup_keys, "dedup_keys")
        if dedup_window is not None:
            o.dedup_window_ms = _delay_ms(dedup_window)
        dir_b = dir.encode() if dir else None
        o.dir = dir_b
        if sync is not None:
            if sync not in _SYNC_NAMES:
                raise InvalidArgument(f"sync must be one of {', '.join(_SYNC_NAMES)}, not {sync!r}")
            o.sync = _SYNC_NAMES.index(sync)
        if sync_interval is not None:
            o.sync_interval_ms = _delay_ms(sync_interval)
        return o, (group_b, dir_b)  # kept alive while the struct points to them

    @classmethod
    def _make(
        cls, fn_name: str, name: str, options: Optional[_capi.jobring_options], url: Optional[str] = None
    ) -> "Queue":
        if not isinstance(name, str):
            raise TypeError(f"a queue name is a str, not {type(name).__name__}")
        L = _capi.lib()
        h = c_void_p()
        name_b = name.encode("utf-8")
        if url is not None:
            if not isinstance(url, str):
                raise TypeError(f"a queue URL is a str, not {type(url).__name__}")
            fn = getattr(L, fn_name + "_url")
            url_b = url.encode("utf-8")
            rc = fn(url_b, name_b, byref(h)) if options is None else fn(url_b, name_b, byref(options), byref(h))
        else:
            fn = getattr(L, fn_name)
            rc = fn(name_b, byref(h)) if options is None else fn(name_b, byref(options), byref(h))
        if rc != _capi.OK:
            raise_for(rc)
        try:
            return cls(h, name)
        except BaseException:
            L.jobring_close(h)
            raise

    @classmethod
    def create(
        cls,
        name: str,
        *,
        capacity: Optional[int] = None,
        max_payload: Optional[int] = None,
        lease: Optional[Seconds] = None,
        max_attempts: Optional[int] = None,
        mode: Optional[int] = None,
        group: Optional[str] = None,
        dedup_keys: Optional[int] = None,
        dedup_window: Optional[Seconds] = None,
        dir: Optional[str] = None,
        sync: Optional[str] = None,
        sync_interval: Optional[Seconds] = None,
        url: Optional[str] = None,
    ) -> "Queue":
        """Creates queue ``name``; :class:`AlreadyExists` if there is one.

        capacity: job slots (default 1024); max_payload: bytes per job
        (default 1024); lease: the lease of a claim that names none (default
        30 s); max_attempts: claims before a job is dead-lettered (default 0:
        unlimited); mode: the segment's permission bits (default 0600, or
        0660 with a group); group: a group name or gid; dedup_keys /
        dedup_window: the de-duplication table (default 2 x capacity, 300 s);
        dir: a file-backed queue that survives a reboot, in this directory
        (the same as the name "DIR/NAME"; README, "Queues that survive a
        reboot"); sync: what its push and ack leave on disk, "none"
        (default), "interval" (the janitor syncs every sync_interval,
        default 1 s) or "always" (a push returns once its job is on disk).
        url: the backend (see :func:`url_from_env`): None or "shm:" is this
        host's shared memory; "redis://HOST:PORT" or
        "redis+unix:///PATH/redis.sock" a Redis 7 server, where mode, group,
        dir and sync are not used.
        """
        o, _keep = cls._c_options(
            capacity, max_payload, lease, max_attempts, mode, group, dedup_keys, dedup_window, dir, sync, sync_interval
        )
        return cls._make("jobring_create", name, o, url)

    @classmethod
    def open(cls, name: str, *, url: Optional[str] = None) -> "Queue":
        """Opens queue ``name`` (on the backend ``url`` names, see
        :meth:`create`); :class:`NotFound` if there is none."""
        return cls._make("jobring_open", name, None, url)

    @classmethod
    def open_or_create(
        cls,
        name: str,
        *,
        capacity: Optional[int] = None,
        max_payload: Optional[int] = None,
        lease: Optional[Seconds] = None,
        max_attempts: Optional[int] = None,
        mode: Optional[int] = None,
        group: Optional[str] = None,
        dedup_keys: Optional[int] = None,
        dedup_window: Optional[Seconds] = None,
        dir: Optional[str] = None,
        sync: Optional[str] = None,
        sync_interval: Optional[Seconds] = None,
        url: Optional[str] = None,
    ) -> "Queue":
        """Opens queue ``name`` if it exists with these options (else
        :class:`OptionsMismatch`), or creates it. Options as :meth:`create`;
        those not given are the defaults, and are compared too."""
        o, _keep = cls._c_options(
            capacity, max_payload, lease, max_attempts, mode, group, dedup_keys, dedup_window, dir, sync, sync_interval
        )
        return cls._make("jobring_open_or_create", name, o, url)

    @staticmethod
    def remove(name: str, *, url: Optional[str] = None) -> bool:
        """Removes queue ``name`` (open handles keep working). False if there was none."""
        if url is not None:
            rc = _capi.lib().jobring_remove_url(url.encode("utf-8"), name.encode("utf-8"))
        else:
            rc = _capi.lib().jobring_remove(name.encode("utf-8"))
        if rc == _capi.E_NOT_FOUND:
            return False
        if rc != _capi.OK:
            raise_for(rc)
        return True

    @property
    def remote(self) -> bool:
        """True for a queue on a Redis server, False for shared memory."""
        return bool(_capi.lib().jobring_queue_is_remote(self._h()) == 1)

    def close(self) -> None:
        """Closes the handle (its process-owned leases then belong to no live
        owner). Idempotent. Do not close a Queue that another thread uses."""
        h, self._handle = self._handle, None
        if h is not None:
            _capi.lib().jobring_close(h)

    def __enter__(self) -> "Queue":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_handle", None) is not None:
            self.close()

    def __repr__(self) -> str:
        return f"<jobring.Queue {self._name!r}{' (closed)' if self._handle is None else ''}>"

    @property
    def name(self) -> str:
        return self._name

    @property
    def closed(self) -> bool:
        return self._handle is None

    @property
    def options(self) -> QueueOptions:
        """The queue's stored options."""
        return self._options

    @property
    def incarnation(self) -> int:
        """A random id drawn when the queue was created."""
        return int(_capi.lib().jobring_queue_incarnation(self._h()))

    def _h(self) -> c_void_p:
        h = self._handle
        if h is None:
            raise Error(f"jobring queue '{self._name}' is closed")
        return h

    # --- producer --------------------------------------------------------
    def push(
        self,
        payload: Payload,
        *,
        delay: Optional[Seconds] = None,
        key: Optional[Key] = None,
        wait: Optional[Seconds] = None,
    ) -> JobId:
        """Pushes a job (bytes, or str as UTF-8) and returns its id.

        delay: invisible for this long (None: no delay). key: a
        de-duplication key (at most 64 bytes): while a job with this key is
        in the queue, and for the queue's dedup_window after its ack, another
        push with it adds nothing and returns that job's id with
        ``.duplicate`` True. wait: when the queue is full, wait this long for
        room (None or 0: do not wait; FOREVER: until there is). Raises
        :class:`QueueFull` when there is no room, :class:`PayloadTooLarge`,
        :class:`Interrupted`.
        """
        data = _payload_bytes(payload)
        o = _capi.jobring_push_options()
        L = _capi.lib()
        L.jobring_push_options_init(byref(o), ctypes.sizeof(o))
        o.delay_ms = _delay_ms(delay)
        kb = _key_bytes(key)
        if kb is not None:
            o.key = kb
            o.key_len = len(kb)
        wait_ms = _wait_ms(wait)
        h = self._h()
        job_id = c_uint64()
        duplicate = c_int()

        def call(ms: int) -> int:
            o.wait_ms = ms
            return int(L.jobring_push(h, data, len(data), byref(o), byref(job_id), byref(duplicate)))

        rc = wait_in_slices(call, wait_ms, _capi.FULL)
        if rc != _capi.OK:
            if rc == _capi.FULL:
                raise QueueFull(f"jobring queue '{self._name}' is full" + (" (waited)" if wait_ms else ""))
            if rc == _capi.INTERRUPTED:
                raise Interrupted(f"jobring queue '{self._name}': push interrupted")
            raise_for(rc)
        return JobId(job_id.value, bool(duplicate.value))

    # --- worker ----------------------------------------------------------
    def _buffer(self) -> _JobBuffer:
        buf: Optional[_JobBuffer] = getattr(self._local, "buf", None)
        if buf is None:
            buf = _JobBuffer()
            self._local.buf = buf
        return buf

    def _claim_into(
        self,
        buf: _JobBuffer,
        lease_ms: int,
        wait_ms: int,
        detached: bool,
        stop: Optional[_Stop],
    ) -> Optional[Job]:
        """Claims into buf; a Job, None (nothing), or raises Interrupted."""
        return _claim_from([self], buf, lease_ms, wait_ms, detached, stop)

    def claim(
        self,
        *,
        lease: Optional[Seconds] = None,
        wait: Optional[Seconds] = None,
        detached: bool = False,
    ) -> Optional[Job]:
        """Claims the next job: a :class:`Job`, or None if there is none.

        lease: how long the job is ours (None: the queue's default lease);
        renew it with :meth:`extend`, end it with :meth:`ack` /
        :meth:`release`. Not ended in time, the job comes back (attempt + 1).
        wait: when nothing is ready, wait this long for a job (None or 0: do
        not wait; FOREVER: until one comes). detached: the lease is not tied
        to this process (by default the janitor hands the job back at once
        when this process dies). Raises :class:`Interrupted` if
        :func:`jobring.interrupt_waits` ended the wait.
        """
        lease_ms = 0 if lease is None else _lease_ms(lease)
        return self._claim_into(self._buffer(), lease_ms, _wait_ms(wait), detached, None)

    def _check(self, job: Job) -> None:
        if not isinstance(job, Job):
            raise TypeError(f"a jobring.Job, not {type(job).__name__}")
        if job._managed:
            raise Error(
                f"jobring queue '{self._name}': job {job.id} is a Worker's: the Worker acks or releases it "
                "when the handler returns (return a jobring.Outcome to choose)"
            )

    def _lease_call(self, rc: int, job: Job) -> None:
        if rc == _capi.OK:
            return
        if rc == _capi.LEASE_LOST:
            job._finished = True
            raise LeaseLost(
                f"jobring queue '{self._name}': the lease of job {job.id} is lost (it ran out and another "
                "worker may have the job, or it was acked or released already); nothing was changed"
            )
        raise_for(rc)

    def ack(self, job: Job) -> None:
        """The job is done: it is deleted. :class:`LeaseLost` if its lease is
        not current any more (nothing was changed)."""
        self._check(job)
        self._lease_call(_capi.lib().jobring_ack_lease(self._h(), byref(job._lease)), job)
        job._finished = True

    def release(self, job: Job, delay: Optional[Seconds] = 0, *, error: Optional[str] = None) -> None:
        """The attempt failed: the job is ready again after ``delay`` — or
        dead, if it was its last attempt (the queue's max_attempts); then
        ``error`` is kept with it as the reason (cut to 112 bytes).
        :class:`LeaseLost` if its lease is not current any more."""
        self._check(job)
        rc = _capi.lib().jobring_release_lease(self._h(), byref(job._lease), _delay_ms(delay), _error_text(error))
        self._lease_call(rc, job)
        job._finished = True

    def give_back(self, job: Job) -> None:
        """Back to ready at once, the attempt not counted (for a job not
        started). :class:`LeaseLost` if its lease is not current any more."""
        self._check(job)
        self._lease_call(_capi.lib().jobring_give_back_lease(self._h(), byref(job._lease)), job)
        job._finished = True

    def extend(self, job: Job, lease: Seconds) -> None:
        """The job's lease now ends ``lease`` seconds from now (its token
        changes: the Job is updated). :class:`LeaseLost` if it is not current
        any more."""
        self._check(job)
        ms = _lease_ms(lease)
        self._lease_call(_capi.lib().jobring_extend_lease(self._h(), byref(job._lease), ms), job)
        job.deadline = time.monotonic() + ms / 1000.0

    # --- operators -------------------------------------------------------
    def stats(self) -> Dict[str, int]:
        """The queue's gauges and totals: ready, delayed, leased, dead, ...,
        pushed, claimed, acked, released, expired_total, dead_lettered, ...
        (the fields of ``jobring_stats``, ``jobring stats NAME``)."""
        s = _capi.jobring_stats()
        s.size = ctypes.sizeof(s)
        rc = _capi.lib().jobring_get_stats(self._h(), byref(s))
        if rc != _capi.OK:
            raise_for(rc)
        return {name: int(getattr(s, name)) for name in _capi.STATS_FIELDS}

    def peek(self, state: str = "ready", limit: int = 100, payload_bytes: int = 256) -> List[JobInfo]:
        """Up to ``limit`` jobs in ``state`` ("ready", "delayed", "leased",
        "dead"), oldest slot first, each with its first ``payload_bytes``
        bytes of payload. Dead jobs carry the reason they died (``error``)."""
        if state not in _STATES:
            raise InvalidArgument(f"state {state!r}: one of {sorted(_STATES)}")
        if limit <= 0:
            return []
        infos = (_capi.jobring_job_info * limit)()
        room = max(0, payload_bytes) * limit
        payloads = ctypes.create_string_buffer(room) if room else None
        count = c_size_t()
        rc = _capi.lib().jobring_peek(
            self._h(), _STATES[state], infos, ctypes.sizeof(_capi.jobring_job_info), limit,
            payloads, room, byref(count),
        )  # fmt: skip
        if rc != _capi.OK:
            raise_for(rc)
        raw = payloads.raw if payloads is not None else b""
        out = []
        for i in range(count.value):
            c = infos[i]
            start = c.payload_offset
            copied = min(c.payload_copied, payload_bytes)
            out.append(
                JobInfo(
                    id=c.id,
                    state=_STATE_NAMES.get(c.state, str(c.state)),
                    slot=c.slot,
                    attempts=c.attempts,
                    owner_pid=c.owner_pid,
                    until=c.ms_until / 1000.0,
                    enqueued_ago=c.enqueued_ms_ago / 1000.0,
                    failed_ago=None if c.failed_ms_ago < 0 else c.failed_ms_ago / 1000.0,
                    error=bytes(c.error[: c.error_len]).decode("utf-8", "replace"),
                    payload=raw[start : start + copied],
                    payload_length=c.payload_len,
                )
            )
        return out

    def requeue(self, dead_job: int) -> bool:
        """A dead job back to ready (attempts reset). False if no dead job has that id."""
        rc = _capi.lib().jobring_requeue(self._h(), dead_job)
        if rc not in (_capi.OK, _capi.NO_SUCH_JOB):
            raise_for(rc)
        return bool(rc == _capi.OK)

    def remove_dead(self, dead_job: int) -> bool:
        """Deletes a dead job. False if no dead job has that id."""
        rc = _capi.lib().jobring_remove_dead(self._h(), dead_job)
        if rc not in (_capi.OK, _capi.NO_SUCH_JOB):
            raise_for(rc)
        return bool(rc == _capi.OK)

    def requeue_dead(self) -> int:
        """Every dead job back to ready; how many."""
        n = c_uint64()
        rc = _capi.lib().jobring_requeue_dead(self._h(), byref(n))
        if rc != _capi.OK:
            raise_for(rc)
        return int(n.value)

    def pause(self) -> bool:
        """Stops handing out jobs (an incident): pushes, acks, releases and
        extends still work, claims find nothing (a blocked claim or a Worker
        sleeps until :meth:`resume`). Stays paused across every process's
        death. True if it was running."""
        return self._switch(_capi.lib().jobring_pause)

    def resume(self) -> bool:
        """Hands out jobs again and wakes blocked claims. True if it was paused."""
        return self._switch(_capi.lib().jobring_resume)

    def _switch(self, call: Callable[..., int]) -> bool:
        changed = c_int()
        rc = call(self._h(), byref(changed))
        if rc != _capi.OK:
            raise_for(rc)
        return bool(changed.value)

    @property
    def paused(self) -> bool:
        """Whether the queue is paused (by any process)."""
        return bool(_capi.lib().jobring_is_paused(self._h()) == 1)

    def move_dead(self, to: "Queue", *, ready: bool = False, limit: Optional[int] = None) -> MoveResult:
        """Moves this queue's dead jobs into the queue ``to``: dead there,
        with their payload, attempts and note (a dead-letter queue: this
        queue has room again), or with ``ready=True`` as new ready jobs (a
        redrive). At most ``limit`` jobs (None: all). Crash-safe: a move cut
        short loses no job and a second move does not double one. Never
        waits; a full ``to`` ends the move (``target_full``)."""
        if limit is not None and limit < 1:
            raise InvalidArgument(f"move_dead limit {limit}: at least 1, or None for all")
        moved, too_large, left = c_uint64(), c_uint64(), c_uint64()
        rc = _capi.lib().jobring_move_dead(
            self._h(),
            to._h(),
            1 if ready else 0,
            min(limit or 0, 2**64 - 1),
            byref(moved),
            byref(too_large),
            byref(left),
        )
        if rc not in (_capi.OK, _capi.FULL):
            raise_for(rc)
        return MoveResult(int(moved.value), int(too_large.value), int(left.value), rc == _capi.FULL)

    def purge(self, *what: str) -> int:
        """Deletes the jobs in the states named: "ready", "delayed", "dead"
        or "all" (leased jobs never; "all" also resets corrupt slots). How many."""
        bits = 0
        for w in what or ("all",):
            if w not in _PURGE:
                raise InvalidArgument(f"purge {w!r}: one of {sorted(_PURGE)}")
            bits |= _PURGE[w]
        n = c_uint64()
        rc = _capi.lib().jobring_purge(self._h(), bits, byref(n))
        if rc != _capi.OK:
            raise_for(rc)
        return int(n.value)


def _claim_from(
    queues: List["Queue"],
    buf: _JobBuffer,
    lease_ms: int,
    wait_ms: int,
    detached: bool,
    stop: Optional[_Stop],
) -> Optional[Job]:
    """Claims into buf from the first of queues that has a job (one queue:
    jobring_claim; several: jobring_claim_any); a Job, None (nothing), or
    raises Interrupted. A job claimed but not handed out (an exception in
    between, such as a KeyboardInterrupt) is given back untouched."""
    L = _capi.lib()
    handles = [q._h() for q in queues]
    o = _capi.jobring_claim_options()
    L.jobring_claim_options_init(byref(o), ctypes.sizeof(o))
    o.lease_ms = lease_ms
    o.owner = _capi.OWNER_DETACHED if detached else _capi.OWNER_PROCESS
    o.stop = stop.ptr if stop is not None else None
    index = c_size_t(0)
    array = (c_void_p * len(handles))(*handles)

    def call(ms: int) -> int:
        o.wait_ms = ms
        if len(handles) == 1:
            return int(L.jobring_claim(handles[0], buf.ptr, byref(o)))
        return int(L.jobring_claim_any(array, len(handles), buf.ptr, byref(o), byref(index)))

    before = buf.lease()
    try:
        rc = wait_in_slices(call, wait_ms, _capi.EMPTY)
        if rc == _capi.OK:
            q = queues[index.value]
            return Job(q, buf, (lease_ms or to_ms(q._options.lease)) / 1000.0)
    except BaseException:
        if buf.lease() != before:  # claimed, never handed out
            lease = _capi.jobring_lease()
            L.jobring_job_lease(buf.ptr, byref(lease))
            L.jobring_give_back_lease(handles[index.value], byref(lease))
        raise
    if rc == _capi.EMPTY:
        return None
    if rc == _capi.INTERRUPTED:
        names = ", ".join(f"'{q.name}'" for q in queues)
        raise Interrupted(f"jobring queue {names}: claim interrupted")
    raise_for(rc)
    return None  # not reached


def claim_any(
    queues: "List[Queue]",
    *,
    lease: Optional[Seconds] = None,
    wait: Optional[Seconds] = None,
    detached: bool = False,
) -> Optional[Job]:
    """One job from the first of ``queues`` (tried in the order given: put
    the most urgent first) that has one, or None; ``job.queue`` is the queue
    it came from (ack it there, or call ``job.ack()``). With ``wait``, sleeps
    on all of them at once until any has a job. lease: None for each queue's
    default. As :meth:`Queue.claim` otherwise."""
    qs = list(queues)
    if not 1 <= len(qs) <= 64 or not all(isinstance(q, Queue) for q in qs):
        raise InvalidArgument(f"claim_any: 1 to 64 jobring.Queue objects, not {qs!r}")
    lease_ms = 0 if lease is None else _lease_ms(lease)
    return _claim_from(qs, qs[0]._buffer(), lease_ms, _wait_ms(wait), detached, None)


# ---------------------------------------------------------------------------
# Process-wide waits
# ---------------------------------------------------------------------------
def url_from_env() -> str:
    """The backend URL in the environment variable JOBRING_URL, or "shm:"
    (this host's shared memory) when it is unset or empty: pass it as
    ``url=`` so that the deployment, not the code, picks the backend."""
    return os.environ.get("JOBRING_URL") or "shm:"


def interrupt_waits() -> None:
    """Every jobring wait of this process (push / claim with ``wait``, a
    Worker's claims) ends with :class:`Interrupted`, and keeps doing so until
    :func:`clear_interrupt`. Every Worker of the process stops."""
    from . import _worker

    _worker._note_interrupt()
    _capi.lib().jobring_interrupt_waits()


def clear_interrupt() -> None:
    """Ends the effect of :func:`interrupt_waits` (and of a stop signal after
    ``Worker.install_signal_handlers()``): call it before running a new Worker."""
    from . import _worker

    _worker._clear_interrupt()
    _capi.lib().jobring_clear_interrupt()


def library_version() -> str:
    """The loaded libjobring's version, "MAJOR.MINOR.PATCH"."""
    return str(_capi.lib().jobring_version().decode())


__all__ = [
    "FOREVER",
    "claim_any",
    "Job",
    "JobId",
    "JobInfo",
    "MoveResult",
    "Queue",
    "QueueOptions",
    "clear_interrupt",
    "interrupt_waits",
    "library_version",
]
