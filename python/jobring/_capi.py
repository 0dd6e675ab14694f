"""The C API (include/jobring/jobring.h) through ctypes: the library, its
structs and its functions' signatures. Internal: use the classes of the
``jobring`` package.

Why ctypes: no compiled extension, so the package is pure Python and works
with any Python 3 version and build without being rebuilt; the C API is the
stable boundary (size-prefixed structs, fixed status codes), so a newer
libjobring.so.0 works under this package unchanged. ctypes releases the GIL
during every foreign call (CDLL), so a blocking claim or push lets the other
Python threads run.

Where the library is looked for, first match wins:

1. ``$JOBRING_LIBRARY``: a path to libjobring.so.0 (only there, if set);
2. this package's own folder (``libjobring.so.0`` put beside ``__init__.py``);
3. ``libjobring.so.0`` through the dynamic loader (``LD_LIBRARY_PATH``, the
   ldconfig cache: the Debian package, or ``cmake --install`` + ``ldconfig``);
4. ``ctypes.util.find_library("jobring")``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from ctypes import (
    POINTER,
    Structure,
    c_char,
    c_char_p,
    c_int,
    c_int32,
    c_int64,
    c_size_t,
    c_uint,
    c_uint32,
    c_uint64,
    c_void_p,
)
from typing import Any, List, Optional

SONAME = "libjobring.so.0"
#: The library's major version this package speaks to (its SONAME).
ABI_MAJOR = 0

# ---- Status codes (jobring.h; fixed for ever) --------------------------------
OK = 0
EMPTY = 1
FULL = 2
LEASE_LOST = 3
INTERRUPTED = 4
NO_SUCH_JOB = 5
E_INVALID_NAME = 101
E_INVALID_OPTIONS = 102
E_INVALID_ARGUMENT = 103
E_NOT_FOUND = 104
E_ALREADY_EXISTS = 105
E_PERMISSION_DENIED = 106
E_NOT_A_QUEUE = 107
E_INCOMPATIBLE_VERSION = 108
E_CORRUPT_SEGMENT = 109
E_INCOMPLETE_SEGMENT = 110
E_PAYLOAD_TOO_LARGE = 111
E_SYSTEM = 112
E_CORRUPT_FILE = 113
E_OPTIONS_MISMATCH = 114
E_UNAVAILABLE = 115
E_TIMEOUT = 116
E_PROTOCOL = 117
E_SERVER = 118
E_UNSAFE_SERVER_CONFIG = 119
E_NOT_SUPPORTED = 120
E_NO_MEMORY = 200
E_INTERNAL = 201

MAX_NAME_LENGTH = 64
MAX_KEY_LENGTH = 64
MAX_ERROR_LENGTH = 112
MAX_LEASE_MS = 604800000
LEASE_TEXT_SIZE = 64

OWNER_PROCESS = 0
OWNER_DETACHED = 1

STATE_READY = 0
STATE_DELAYED = 1
STATE_LEASED = 2
STATE_DEAD = 3

PURGE_READY = 1
PURGE_DELAYED = 2
PURGE_DEAD = 4
PURGE_ALL = 7


# ---- Structs (field for field as in jobring.h) -------------------------------
class jobring_options(Structure):
    _fields_ = [
        ("size", c_size_t),
        ("capacity", c_uint32),
        ("max_payload", c_uint32),
        ("default_lease_ms", c_int64),
        ("max_attempts", c_uint32),
        ("mode", c_uint32),
        ("group", c_char_p),
        ("dedup_keys", c_uint32),
        ("reserved0", c_uint32),
        ("dedup_window_ms", c_int64),
        ("dir", c_char_p),
        ("sync", c_uint32),
        ("sync_interval_ms", c_uint32),
    ]


class jobring_push_options(Structure):
    _fields_ = [
        ("size", c_size_t),
        ("delay_ms", c_int64),
        ("wait_ms", c_int64),
        ("key", c_char_p),
        ("key_len", c_size_t),
        ("stop", c_void_p),
    ]


class jobring_lease(Structure):
    _fields_ = [
        ("job", c_uint64),
        ("token", c_uint64),
        ("slot", c_uint32),
        ("reserved0", c_uint32),
    ]


class jobring_claim_options(Structure):
    _fields_ = [
        ("size", c_size_t),
        ("lease_ms", c_int64),
        ("wait_ms", c_int64),
        ("owner", c_int32),
        ("reserved0", c_int32),
        ("stop", c_void_p),
    ]


STATS_FIELDS = (
    "free", "writing", "ready", "delayed", "leased", "expired", "dead", "corrupt",
    "oldest_lease_ms", "oldest_ready_ms",
    "keys_live", "keys_remembered", "keys_capacity",
    "pushed", "claimed", "acked", "released", "expired_total", "dead_lettered", "requeued", "purged",
    "recovered_writes", "reclaimed", "duplicates", "keys_evicted", "keys_full",
    "moved_out", "moved_in", "paused",
    "recoveries", "recovered_leases", "recovered_boot_writes", "sync_errors",
)  # fmt: skip


class jobring_stats(Structure):
    _fields_ = [("size", c_size_t)] + [(name, c_uint64) for name in STATS_FIELDS]


class jobring_job_info(Structure):
    _fields_ = [
        ("id", c_uint64),
        ("state", c_int32),
        ("slot", c_uint32),
        ("attempts", c_uint32),
        ("owner_pid", c_int32),
        ("ms_until", c_int64),
        ("enqueued_ms_ago", c_uint64),
        ("failed_ms_ago", c_int64),
        ("error_len", c_uint32),
        ("error", c_char * (MAX_ERROR_LENGTH + 1)),
        ("payload_len", c_uint64),
        ("payload_offset", c_uint64),
        ("payload_copied", c_uint64),
    ]


STRUCTS = {
    "jobring_options": jobring_options,
    "jobring_push_options": jobring_push_options,
    "jobring_lease": jobring_lease,
    "jobring_claim_options": jobring_claim_options,
    "jobring_stats": jobring_stats,
    "jobring_job_info": jobring_job_info,
}

_p = c_void_p  # opaque handles: jobring_queue*, jobring_job*, jobring_stop*
_SIGNATURES: List[Any] = [
    # name, restype, argtypes
    ("jobring_strerror", c_char_p, [c_int]),
    ("jobring_last_error", c_char_p, []),
    ("jobring_version", c_char_p, []),
    ("jobring_options_init", c_int, [POINTER(jobring_options), c_size_t]),
    ("jobring_create", c_int, [c_char_p, POINTER(jobring_options), POINTER(_p)]),
    ("jobring_open", c_int, [c_char_p, POINTER(_p)]),
    ("jobring_open_or_create", c_int, [c_char_p, POINTER(jobring_options), POINTER(_p)]),
    ("jobring_close", None, [_p]),
    ("jobring_remove", c_int, [c_char_p]),
    ("jobring_create_url", c_int, [c_char_p, c_char_p, POINTER(jobring_options), POINTER(_p)]),
    ("jobring_open_url", c_int, [c_char_p, c_char_p, POINTER(_p)]),
    ("jobring_open_or_create_url", c_int, [c_char_p, c_char_p, POINTER(jobring_options), POINTER(_p)]),
    ("jobring_remove_url", c_int, [c_char_p, c_char_p]),
    ("jobring_queue_is_remote", c_int, [_p]),
    ("jobring_queue_options", c_int, [_p, POINTER(jobring_options)]),
    ("jobring_queue_name", c_char_p, [_p]),
    ("jobring_queue_incarnation", c_uint64, [_p]),
    ("jobring_stop_new", c_int, [POINTER(_p)]),
    ("jobring_stop_free", None, [_p]),
    ("jobring_stop_set", None, [_p, c_int]),
    ("jobring_interrupt_waits", None, []),
    ("jobring_clear_interrupt", None, []),
    ("jobring_wake_waits", None, []),
    ("jobring_push_options_init", c_int, [POINTER(jobring_push_options), c_size_t]),
    ("jobring_push", c_int, [_p, c_void_p, c_size_t, POINTER(jobring_push_options), POINTER(c_uint64), POINTER(c_int)]),
    ("jobring_job_new", c_int, [POINTER(_p)]),
    ("jobring_job_free", None, [_p]),
    ("jobring_job_id", c_uint64, [_p]),
    ("jobring_job_payload", c_void_p, [_p, POINTER(c_size_t)]),
    ("jobring_job_attempt", c_uint32, [_p]),
    ("jobring_job_key", c_void_p, [_p, POINTER(c_size_t)]),
    ("jobring_job_incarnation", c_uint64, [_p]),
    ("jobring_job_lease", c_int, [_p, POINTER(jobring_lease)]),
    ("jobring_lease_format", c_int, [POINTER(jobring_lease), c_char_p, c_size_t]),
    ("jobring_lease_parse", c_int, [c_char_p, POINTER(jobring_lease)]),
    ("jobring_claim_options_init", c_int, [POINTER(jobring_claim_options), c_size_t]),
    ("jobring_claim", c_int, [_p, _p, POINTER(jobring_claim_options)]),
    ("jobring_ack_lease", c_int, [_p, POINTER(jobring_lease)]),
    ("jobring_release_lease", c_int, [_p, POINTER(jobring_lease), c_int64, c_char_p]),
    ("jobring_give_back_lease", c_int, [_p, POINTER(jobring_lease)]),
    ("jobring_extend_lease", c_int, [_p, POINTER(jobring_lease), c_int64]),
    ("jobring_get_stats", c_int, [_p, POINTER(jobring_stats)]),
    ("jobring_peek", c_int, [_p, c_int, c_void_p, c_size_t, c_size_t, c_void_p, c_size_t, POINTER(c_size_t)]),
    ("jobring_requeue", c_int, [_p, c_uint64]),
    ("jobring_remove_dead", c_int, [_p, c_uint64]),
    ("jobring_requeue_dead", c_int, [_p, POINTER(c_uint64)]),
    ("jobring_purge", c_int, [_p, c_uint, POINTER(c_uint64)]),
    ("jobring_claim_any", c_int, [POINTER(c_void_p), c_size_t, _p, _p, POINTER(c_size_t)]),
    ("jobring_pause", c_int, [_p, POINTER(c_int)]),
    ("jobring_resume", c_int, [_p, POINTER(c_int)]),
    ("jobring_is_paused", c_int, [_p]),
    ("jobring_move_dead", c_int, [_p, _p, c_int, c_uint64, POINTER(c_uint64), POINTER(c_uint64), POINTER(c_uint64)]),
]


class LibraryNotFound(ImportError):
    """libjobring.so.0 could not be loaded (see the message for where it was looked for)."""


_lib: Optional[ctypes.CDLL] = None
_lib_path: Optional[str] = None
_lock = threading.Lock()


def _candidates() -> List[str]:
    env = os.environ.get("JOBRING_LIBRARY")
    if env:
        return [env]
    here = os.path.dirname(os.path.abspath(__file__))
    found = [os.path.join(here, n) for n in (SONAME, "libjobring.so") if os.path.exists(os.path.join(here, n))]
    found.append(SONAME)
    by_util = ctypes.util.find_library("jobring")
    if by_util and by_util != SONAME:
        found.append(by_util)
    return found


def _load() -> ctypes.CDLL:
    tried = []
    for candidate in _candidates():
        try:
            lib = ctypes.CDLL(candidate)  # CDLL: the GIL is released during every call
        except OSError as e:
            tried.append(f"{candidate}: {e}")
            continue
        if not hasattr(lib, "jobring_version"):
            tried.append(f"{candidate}: not libjobring (no jobring_version)")
            continue
        lib.jobring_version.restype = c_char_p
        version = lib.jobring_version().decode()
        if int(version.split(".")[0]) != ABI_MAJOR:
            tried.append(f"{candidate}: version {version}, this package needs {ABI_MAJOR}.x")
            continue
        for name, restype, argtypes in _SIGNATURES:
            fn = getattr(lib, name)
            fn.restype = restype
            fn.argtypes = argtypes
        global _lib_path
        _lib_path = candidate
        return lib
    where = "; ".join(tried) if tried else "nothing to try"
    raise LibraryNotFound(
        f"jobring: cannot load {SONAME} ({where}). Install the library (the jobring .deb, or "
        "`cmake --install build` then `ldconfig`), or set JOBRING_LIBRARY=/path/to/libjobring.so.0"
    )


def lib() -> ctypes.CDLL:
    """The loaded library (loaded on first use)."""
    global _lib
    if _lib is None:
        with _lock:
            if _lib is None:
                _lib = _load()
    return _lib


def library_path() -> str:
    """Where the loaded library was found (loads it if needed)."""
    lib()
    assert _lib_path is not None
    return _lib_path


def last_error() -> str:
    """This thread's message about its last jobring_* call."""
    return str(lib().jobring_last_error().decode("utf-8", "replace"))
