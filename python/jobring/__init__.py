"""jobring: a crash-safe leased job queue in named shared memory, for
processes on one Linux host — Python binding of libjobring's C API.

Producer::

    import jobring
    q = jobring.Queue.open_or_create("emails", capacity=1024, lease=30.0, max_attempts=5)
    q.push("send welcome email to ann@example.com")

Worker::

    def handle(job):                  # raise to retry later (backoff); return to ack
        send(job.text)

    jobring.Worker.install_signal_handlers()   # SIGTERM / Ctrl-C: finish the job in hand, then stop
    jobring.Worker(q, handle, threads=4).run()

Or by hand: ``job = q.claim(wait=1.0)`` gives a :class:`Job` or None;
``with job:`` acks it when the block succeeds and releases it (for a retry)
when it raises. Every failure is a :class:`jobring.Error`.

The library (libjobring.so.0) is found through $JOBRING_LIBRARY, this
package's folder, or the dynamic loader (see jobring._capi).
"""

from __future__ import annotations

from ._backoff import FOREVER, Backoff, Seconds, backoff_delay
from ._capi import LibraryNotFound, library_path
from ._errors import (
    AlreadyExists,
    CorruptFile,
    CorruptSegment,
    Error,
    IncompatibleVersion,
    IncompleteSegment,
    InternalError,
    Interrupted,
    InvalidArgument,
    InvalidName,
    InvalidOptions,
    LeaseLost,
    NoMemory,
    NotAQueue,
    NotFound,
    OptionsMismatch,
    PayloadTooLarge,
    NotSupported,
    PermissionDenied,
    ProtocolError,
    QueueFull,
    ServerError,
    SystemFailure,
    Timeout,
    Unavailable,
    UnsafeServerConfig,
)
from ._queue import (
    Job,
    JobId,
    JobInfo,
    MoveResult,
    Queue,
    QueueOptions,
    claim_any,
    clear_interrupt,
    interrupt_waits,
    library_version,
    url_from_env,
)
from ._worker import (
    ABANDONED,
    ACKED,
    DEAD,
    DROPPED,
    LEASE_LOST,
    RETRIED,
    SKIPPED,
    UNCONFIRMED,
    BackendError,
    JobContext,
    JobReport,
    Outcome,
    Worker,
    WorkerSummary,
)

__version__ = "0.1.0"

__all__ = [
    "ABANDONED",
    "ACKED",
    "AlreadyExists",
    "BackendError",
    "Backoff",
    "backoff_delay",
    "claim_any",
    "clear_interrupt",
    "CorruptFile",
    "CorruptSegment",
    "DEAD",
    "DROPPED",
    "Error",
    "FOREVER",
    "IncompatibleVersion",
    "IncompleteSegment",
    "InternalError",
    "interrupt_waits",
    "Interrupted",
    "InvalidArgument",
    "InvalidName",
    "InvalidOptions",
    "Job",
    "JobContext",
    "JobId",
    "JobInfo",
    "JobReport",
    "LEASE_LOST",
    "LeaseLost",
    "library_path",
    "library_version",
    "LibraryNotFound",
    "MoveResult",
    "NoMemory",
    "NotAQueue",
    "NotFound",
    "NotSupported",
    "OptionsMismatch",
    "Outcome",
    "PayloadTooLarge",
    "PermissionDenied",
    "ProtocolError",
    "Queue",
    "QueueFull",
    "QueueOptions",
    "RETRIED",
    "Seconds",
    "ServerError",
    "SKIPPED",
    "UNCONFIRMED",
    "SystemFailure",
    "Timeout",
    "Unavailable",
    "UnsafeServerConfig",
    "url_from_env",
    "Worker",
    "WorkerSummary",
]
