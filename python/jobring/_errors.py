"""jobring's exceptions: one base class, :class:`Error`, and a subclass per
status code of the C API. Each carries the C status (``code``) and the
library's whole message (the queue, what went wrong, what to do)."""

from __future__ import annotations

from typing import Dict, Type

from . import _capi


class Error(Exception):
    """Base class of every exception this package raises for a jobring
    failure. ``code`` is the C API's status (``jobring.h``)."""

    code: int = 0

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        if code:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


# --- Outcomes that become exceptions where a call has no other way to say it.
class QueueFull(Error):
    """No free slot (after waiting, if the push asked to wait)."""

    code = _capi.FULL


class LeaseLost(Error):
    """The lease is no longer current: it ran out and the job may be another
    worker's now, or it was acked / released already. Nothing was changed."""

    code = _capi.LEASE_LOST


class Interrupted(Error):
    """A wait ended by :func:`jobring.interrupt_waits` (or a stop)."""

    code = _capi.INTERRUPTED


# --- Errors (JOBRING_E_*).
class InvalidName(Error, ValueError):
    """The queue name is not 1..64 characters of ``A-Z a-z 0-9 . _ -`` (not starting with '.')."""

    code = _capi.E_INVALID_NAME


class InvalidOptions(Error, ValueError):
    """Queue options out of range."""

    code = _capi.E_INVALID_OPTIONS


class InvalidArgument(Error, ValueError):
    """An argument out of range (a lease, delay, wait or key too long, ...)."""

    code = _capi.E_INVALID_ARGUMENT


class NotFound(Error, LookupError):
    """No such queue."""

    code = _capi.E_NOT_FOUND


class AlreadyExists(Error):
    """A queue with this name exists already (create)."""

    code = _capi.E_ALREADY_EXISTS


class PermissionDenied(Error):
    """The queue's segment may not be opened by this user."""

    code = _capi.E_PERMISSION_DENIED


class NotAQueue(Error):
    """The segment with this name is not a jobring queue."""

    code = _capi.E_NOT_A_QUEUE


class IncompatibleVersion(Error):
    """The queue was created by an incompatible jobring version."""

    code = _capi.E_INCOMPATIBLE_VERSION


class CorruptSegment(Error):
    """The queue's segment is corrupt or truncated."""

    code = _capi.E_CORRUPT_SEGMENT


class IncompleteSegment(Error):
    """The queue's segment was never fully initialised (its creator died)."""

    code = _capi.E_INCOMPLETE_SEGMENT


class PayloadTooLarge(Error, ValueError):
    """The payload is larger than the queue's max_payload."""

    code = _capi.E_PAYLOAD_TOO_LARGE


class SystemFailure(Error, OSError):
    """Any other failure of the operating system (the message has errno's text)."""

    code = _capi.E_SYSTEM


class Unavailable(Error, ConnectionError):
    """The Redis backend's server refused the connection, or it dropped: the
    call's outcome is unknown (is the server running at the URL?)."""

    code = _capi.E_UNAVAILABLE


class Timeout(Error, TimeoutError):
    """The Redis server did not answer in time (stopped, overloaded or
    unreachable); the call may or may not have taken effect."""

    code = _capi.E_TIMEOUT


class ProtocolError(Error):
    """The server's answer is not what a Redis 7 server with jobring's library sends."""

    code = _capi.E_PROTOCOL


class ServerError(Error):
    """The Redis server answered with an error (out of memory, a read-only replica, ...)."""

    code = _capi.E_SERVER


class UnsafeServerConfig(Error):
    """The Redis server could lose jobs (its maxmemory-policy evicts keys): fix its configuration."""

    code = _capi.E_UNSAFE_SERVER_CONFIG


class NotSupported(Error):
    """A URL or feature this build or backend does not support (yet)."""

    code = _capi.E_NOT_SUPPORTED


class CorruptFile(Error):
    """A jobring file is corrupt or of another kind."""

    code = _capi.E_CORRUPT_FILE


class OptionsMismatch(Error):
    """open_or_create: the queue exists with other options than those asked for."""

    code = _capi.E_OPTIONS_MISMATCH


class NoMemory(Error, MemoryError):
    """An allocation in the library failed."""

    code = _capi.E_NO_MEMORY


class InternalError(Error):
    """An unexpected failure inside the library (a bug: please report it)."""

    code = _capi.E_INTERNAL


_BY_CODE: Dict[int, Type[Error]] = {
    cls.code: cls
    for cls in (
        QueueFull, LeaseLost, Interrupted, InvalidName, InvalidOptions, InvalidArgument, NotFound,
        AlreadyExists, PermissionDenied, NotAQueue, IncompatibleVersion, CorruptSegment,
        IncompleteSegment, PayloadTooLarge, SystemFailure, CorruptFile, OptionsMismatch, NoMemory,
        InternalError, Unavailable, Timeout, ProtocolError, ServerError, UnsafeServerConfig, NotSupported,
    )
}  # fmt: skip


def error_for(code: int, message: str) -> Error:
    """The exception for a C status code, with the message given."""
    cls = _BY_CODE.get(code, Error)
    if cls is Error:
        return Error(message, code)
    return cls(message)


def raise_for(code: int) -> None:
    """Raises the exception for status ``code`` with this thread's last error."""
    raise error_for(code, _capi.last_error())
