/* jobring — the C API: a stable C99 interface to jobring::Queue.
 *
 * For C programs and for other languages' foreign-function interfaces
 * (Python's ctypes / cffi): opaque handles, plain structs, no varargs, no
 * struct returned by value, no exception crosses it. Link libjobring.so
 * (pkg-config --libs jobring, or CMake's jobring::jobring_shared).
 *
 * Status codes. Every call that can fail returns an int status: JOBRING_OK
 * (0); an ordinary outcome (1..99: JOBRING_EMPTY, JOBRING_FULL, ...); or an
 * error (100 and up: JOBRING_E_*). jobring_strerror(code) is a static text;
 * jobring_last_error() is the calling thread's message about its last call,
 * naming the queue and saying what to do. Accessors of a job (jobring_job_id
 * and the like) cannot fail and return their value directly.
 *
 * Stability (the C ABI): codes are never renumbered and never reused; the
 * structs below only ever gain fields at their end. Each struct that a
 * caller passes in or gets filled carries its own size: the library reads
 * and writes only the fields that size covers, so a program built against
 * an older header works with a newer library (fields it does not know take
 * their defaults). Handles are opaque: their layout is not part of the ABI.
 *
 * Durations are int64_t milliseconds. A wait_ms of 0 does not wait; -1
 * waits for ever (until a job or room, or an interrupt).
 *
 * Threads: a jobring_queue may be used from many threads at once; a
 * jobring_job (and a jobring_stop) is one thread's at a time. Nothing on the
 * path push / claim / ack / release / give_back / extend allocates memory
 * once a job buffer has been through its first claim.
 */
#ifndef JOBRING_JOBRING_H
#define JOBRING_JOBRING_H

#include <stddef.h>
#include <stdint.h>

#include "jobring/version.h" /* JOBRING_VERSION_MAJOR / _MINOR / _PATCH / JOBRING_VERSION_STRING */

#if defined(__GNUC__)
#define JOBRING_API __attribute__((visibility("default")))
#else
#define JOBRING_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Status codes. Values are fixed for ever. ---------------------------- */
enum {
  JOBRING_OK = 0,
  /* Ordinary outcomes: values, not failures. A wait that runs out ends in
   * EMPTY (claim) or FULL (push), as without a wait. */
  JOBRING_EMPTY = 1,       /* nothing to claim */
  JOBRING_FULL = 2,        /* no free slot (or every key-table entry live) */
  JOBRING_LEASE_LOST = 3,  /* the lease is no longer current: nothing changed */
  JOBRING_INTERRUPTED = 4, /* jobring_interrupt_waits(), or the call's stop flag */
  JOBRING_NO_SUCH_JOB = 5, /* requeue / remove_dead: no dead job with that id */
  /* Errors. 101..114 mirror jobring::errc (error.hpp) value for value. */
  JOBRING_E_INVALID_NAME = 101,
  JOBRING_E_INVALID_OPTIONS = 102,
  JOBRING_E_INVALID_ARGUMENT = 103, /* also: a NULL pointer, a bad size field */
  JOBRING_E_NOT_FOUND = 104,
  JOBRING_E_ALREADY_EXISTS = 105,
  JOBRING_E_PERMISSION_DENIED = 106,
  JOBRING_E_NOT_A_QUEUE = 107,
  JOBRING_E_INCOMPATIBLE_VERSION = 108,
  JOBRING_E_CORRUPT_SEGMENT = 109,
  JOBRING_E_INCOMPLETE_SEGMENT = 110,
  JOBRING_E_PAYLOAD_TOO_LARGE = 111,
  JOBRING_E_SYSTEM = 112, /* any other failure of the OS: the message has errno's text */
  JOBRING_E_CORRUPT_FILE = 113,
  JOBRING_E_OPTIONS_MISMATCH = 114,
  JOBRING_E_UNAVAILABLE = 115, /* the Redis backend's server: refused, reset or closed */
  JOBRING_E_TIMEOUT = 116,     /* the server did not answer in time */
  JOBRING_E_PROTOCOL = 117,
  JOBRING_E_SERVER = 118,
  JOBRING_E_UNSAFE_SERVER_CONFIG = 119,
  JOBRING_E_NOT_SUPPORTED = 120,
  /* Errors of the C API itself. */
  JOBRING_E_NO_MEMORY = 200, /* an allocation failed */
  JOBRING_E_INTERNAL = 201   /* an unexpected failure inside the library (a bug): see the message */
};

/* A static English text for a status code (never NULL). */
JOBRING_API const char* jobring_strerror(int code);
/* The calling thread's message about its last jobring_* call (its status's
 * text, or for an error the whole message: the queue, what went wrong and
 * what to do). Valid until this thread's next jobring_* call. Never NULL. */
JOBRING_API const char* jobring_last_error(void);

/* The library's version, "MAJOR.MINOR.PATCH" (the header's is
 * JOBRING_VERSION_STRING). */
JOBRING_API const char* jobring_version(void);

/* ---- Limits (as in queue.hpp). -------------------------------------------- */
#define JOBRING_MAX_NAME_LENGTH 64
#define JOBRING_MAX_KEY_LENGTH 64
#define JOBRING_MAX_ERROR_LENGTH 112
#define JOBRING_MAX_LEASE_MS 604800000 /* 7 days: also the longest delay and wait */
#define JOBRING_LEASE_TEXT_SIZE 64     /* a buffer this large holds any lease text and its NUL */

/* ---- Handles. ---------------------------------------------------------- */
typedef struct jobring_queue jobring_queue; /* an open queue */
typedef struct jobring_job jobring_job;     /* a reusable buffer for claimed jobs */
typedef struct jobring_stop jobring_stop;   /* a stop flag for some waits */

/* ---- Queues. ------------------------------------------------------------ */

/* Options of a new queue (jobring::Options). Initialise with
 * jobring_options_init(&o, sizeof o), then change what you need. */
typedef struct jobring_options {
  size_t size;              /* sizeof(jobring_options) as the caller knows it */
  uint32_t capacity;        /* job slots: 1 .. 2^24; default 1024 */
  uint32_t max_payload;     /* bytes per job: 1 .. 64 MiB; default 1024 */
  int64_t default_lease_ms; /* lease of a claim that asks for 0: 1 .. 7 days; default 30 s */
  uint32_t max_attempts;    /* claims before a job is dead-lettered; 0 (default) = unlimited */
  uint32_t mode;            /* the segment's permission bits; 0 = 0600, or 0660 with a group */
  const char* group;        /* a group name or gid; NULL or "" = the creator's. Read by create only */
  uint32_t dedup_keys;      /* de-duplication table entries; 0 = 2 x capacity */
  uint32_t reserved0;       /* 0 */
  int64_t dedup_window_ms;  /* how long a finished job's key is remembered; default 5 min */
  /* A file-backed queue (jobring::Options::dir): the directory of its
   * segment file; NULL or "" = /dev/shm (memory). The same as the name
   * "DIR/NAME". Read by create only (jobring_queue_options sets it NULL:
   * the directory is in jobring_queue_name). */
  const char* dir;
  uint32_t sync; /* file-backed only: JOBRING_SYNC_NONE (default), _INTERVAL or _ALWAYS */
  uint32_t
      sync_interval_ms; /* JOBRING_SYNC_INTERVAL: the janitor's msync period, 10 ms .. 1 h; default 1 s */
} jobring_options;

/* jobring_options::sync: what a file-backed queue's push and ack leave on
 * disk before they return (README, "Sync policies"). */
#define JOBRING_SYNC_NONE 0
#define JOBRING_SYNC_INTERVAL 1
#define JOBRING_SYNC_ALWAYS 2

/* Sets o->size = size and every field that size covers to its default.
 * size must be at least sizeof(size_t). */
JOBRING_API int jobring_options_init(jobring_options* o, size_t size);

/* Each gives a new handle in *out (NULL on failure). options may be NULL for
 * the defaults. jobring_open_or_create opens an existing queue if it has the
 * options asked for (else JOBRING_E_OPTIONS_MISMATCH), or creates it. */
JOBRING_API int jobring_create(const char* name, const jobring_options* options, jobring_queue** out);
JOBRING_API int jobring_open(const char* name, jobring_queue** out);
JOBRING_API int jobring_open_or_create(const char* name, const jobring_options* options, jobring_queue** out);
/* Closes the handle (its process-owned leases then belong to no live owner).
 * NULL is ignored. */
JOBRING_API void jobring_close(jobring_queue* q);
/* Removes the name (handles keep working); JOBRING_E_NOT_FOUND if none. */
JOBRING_API int jobring_remove(const char* name);

/* The same on the backend a URL names (any_queue.hpp): NULL, "" or "shm:"
 * is this host's shared memory (as the calls above); "redis://HOST:PORT",
 * "redis+unix:///PATH/redis.sock" a Redis 7 server (jobring's Redis
 * backend: README, "More than one host"). Every call below works on such a
 * handle, but jobring_move_dead (JOBRING_E_NOT_SUPPORTED); on Redis, a call
 * that talks to the server can also fail with JOBRING_E_UNAVAILABLE (down,
 * connection lost: its outcome unknown) or JOBRING_E_TIMEOUT, and the
 * options mode, group, dir and sync are not used. An unknown scheme is
 * JOBRING_E_INVALID_ARGUMENT; a library built without the Redis backend
 * answers JOBRING_E_NOT_SUPPORTED. */
JOBRING_API int jobring_create_url(const char* url, const char* name, const jobring_options* options,
                                   jobring_queue** out);
JOBRING_API int jobring_open_url(const char* url, const char* name, jobring_queue** out);
JOBRING_API int jobring_open_or_create_url(const char* url, const char* name, const jobring_options* options,
                                           jobring_queue** out);
JOBRING_API int jobring_remove_url(const char* url, const char* name);
/* 1 if the handle is on Redis, 0 if on shared memory (-1 for NULL). */
JOBRING_API int jobring_queue_is_remote(const jobring_queue* q);

/* The queue's stored options (group is set to NULL), its name, its
 * incarnation (a random id drawn at creation). */
JOBRING_API int jobring_queue_options(const jobring_queue* q, jobring_options* out);
JOBRING_API const char* jobring_queue_name(const jobring_queue* q);
JOBRING_API uint64_t jobring_queue_incarnation(const jobring_queue* q);

/* ---- Stop flags and interrupts. ---------------------------------------- */

/* A flag that stops the waits given it (jobring_push_options::stop,
 * jobring_claim_options::stop): set it, then call jobring_wake_waits(). */
JOBRING_API int jobring_stop_new(jobring_stop** out);
JOBRING_API void jobring_stop_free(jobring_stop* s);
/* Async-signal-safe. value: non-zero sets the flag, 0 clears it. */
JOBRING_API void jobring_stop_set(jobring_stop* s, int value);

/* As jobring::interrupt_waits / clear_interrupt / wake_waits: make every
 * wait of this process return JOBRING_INTERRUPTED, until cleared; wake every
 * wait to look at its stop flag. interrupt and wake are async-signal-safe. */
JOBRING_API void jobring_interrupt_waits(void);
JOBRING_API void jobring_clear_interrupt(void);
JOBRING_API void jobring_wake_waits(void);

/* ---- Producer. ---------------------------------------------------------- */

typedef struct jobring_push_options {
  size_t size;        /* set by jobring_push_options_init */
  int64_t delay_ms;   /* invisible for this long: 0 .. 7 days */
  int64_t wait_ms;    /* when full, wait up to this long for room; 0 = no, -1 = for ever */
  const char* key;    /* de-duplication key (key_len bytes, 0 .. 64); NULL = none */
  size_t key_len;     /* bytes of key */
  jobring_stop* stop; /* NULL, or a flag that ends the wait with JOBRING_INTERRUPTED */
} jobring_push_options;

JOBRING_API int jobring_push_options_init(jobring_push_options* o, size_t size);

/* Pushes len bytes (len may be 0; payload may then be NULL). JOBRING_OK with
 * the job's id in *id (if id is not NULL); *duplicate (if not NULL) is 1 when
 * the key named a job already there, whose id *id then is. JOBRING_FULL,
 * JOBRING_INTERRUPTED, or an error (JOBRING_E_PAYLOAD_TOO_LARGE, ...). */
JOBRING_API int jobring_push(jobring_queue* q, const void* payload, size_t len,
                             const jobring_push_options* options, uint64_t* id, int* duplicate);

/* ---- Worker. ------------------------------------------------------------ */

/* A job buffer: claims fill it, reusing its storage (it grows to the
 * queue's max_payload on its first claim and is never reallocated). */
JOBRING_API int jobring_job_new(jobring_job** out);
JOBRING_API void jobring_job_free(jobring_job* job);

/* What a claimed job is. Valid until the buffer's next claim; 0 / NULL for a
 * NULL job. payload and key are not NUL-terminated: their length is in *len. */
JOBRING_API uint64_t jobring_job_id(const jobring_job* job);
JOBRING_API const void* jobring_job_payload(const jobring_job* job, size_t* len);
JOBRING_API uint32_t jobring_job_attempt(const jobring_job* job);
JOBRING_API const char* jobring_job_key(const jobring_job* job, size_t* len);
JOBRING_API uint64_t jobring_job_incarnation(const jobring_job* job);

/* A lease, as plain data: what ack / release / extend need. It can be
 * written down and handed to another process (jobring_lease_format /
 * jobring_lease_parse); "job.slot.token" in text. */
typedef struct jobring_lease {
  uint64_t job;
  uint64_t token;
  uint32_t slot;
  uint32_t reserved0; /* 0 */
} jobring_lease;

JOBRING_API int jobring_job_lease(const jobring_job* job, jobring_lease* out);
/* Writes the lease's text and a NUL into buf (JOBRING_LEASE_TEXT_SIZE bytes
 * always suffice); JOBRING_E_INVALID_ARGUMENT if it does not fit. */
JOBRING_API int jobring_lease_format(const jobring_lease* lease, char* buf, size_t buf_size);
/* Parses a NUL-terminated lease text; JOBRING_E_INVALID_ARGUMENT if malformed. */
JOBRING_API int jobring_lease_parse(const char* text, jobring_lease* out);

enum { JOBRING_OWNER_PROCESS = 0, JOBRING_OWNER_DETACHED = 1 };

typedef struct jobring_claim_options {
  size_t size;        /* set by jobring_claim_options_init */
  int64_t lease_ms;   /* 0 = the queue's default_lease; else 1 .. 7 days */
  int64_t wait_ms;    /* when nothing is claimable, wait up to this long; 0 = no, -1 = for ever */
  int32_t owner;      /* JOBRING_OWNER_PROCESS (default) or JOBRING_OWNER_DETACHED */
  int32_t reserved0;  /* 0 */
  jobring_stop* stop; /* NULL, or a flag that ends the wait with JOBRING_INTERRUPTED */
} jobring_claim_options;

JOBRING_API int jobring_claim_options_init(jobring_claim_options* o, size_t size);

/* Claims one job into job (options may be NULL: default lease, no wait).
 * JOBRING_OK, JOBRING_EMPTY, JOBRING_INTERRUPTED or an error. */
JOBRING_API int jobring_claim(jobring_queue* q, jobring_job* job, const jobring_claim_options* options);

/* One job from the first of queues[0 .. count) (1 .. 64, tried in that
 * order) that has one (jobring::Queue::claim_any); *index (if not NULL) gets
 * which. With options->wait_ms, sleeps on all of them at once. The lease is
 * options->lease_ms, or each queue's default_lease. As jobring_claim
 * otherwise; ack, release or extend the job in queues[*index]. */
JOBRING_API int jobring_claim_any(jobring_queue* const* queues, size_t count, jobring_job* job,
                                  const jobring_claim_options* options, size_t* index);

/* End or keep the job's lease. Each is JOBRING_OK, or JOBRING_LEASE_LOST
 * (the lease is not current any more: nothing changed). release: back to
 * ready after delay_ms, or dead if its attempts are used up; error (NULL or
 * a NUL-terminated text) says why, kept with a job that dies. give_back:
 * back to ready at once, the attempt not counted. extend: the lease now
 * ends lease_ms (1 .. 7 days) from now; the job's lease is updated. */
JOBRING_API int jobring_ack(jobring_queue* q, const jobring_job* job);
JOBRING_API int jobring_release(jobring_queue* q, const jobring_job* job, int64_t delay_ms,
                                const char* error);
JOBRING_API int jobring_give_back(jobring_queue* q, const jobring_job* job);
JOBRING_API int jobring_extend(jobring_queue* q, jobring_job* job, int64_t lease_ms);
/* The same for a lease handed over as data (jobring_lease_parse). */
JOBRING_API int jobring_ack_lease(jobring_queue* q, const jobring_lease* lease);
JOBRING_API int jobring_release_lease(jobring_queue* q, const jobring_lease* lease, int64_t delay_ms,
                                      const char* error);
JOBRING_API int jobring_give_back_lease(jobring_queue* q, const jobring_lease* lease);
JOBRING_API int jobring_extend_lease(jobring_queue* q, jobring_lease* lease, int64_t lease_ms);

/* ---- Operators. --------------------------------------------------------- */

/* jobring::Stats, every field a uint64_t, in Stats' order. Set size =
 * sizeof(jobring_stats); the library fills the fields it covers. */
typedef struct jobring_stats {
  size_t size;
  /* gauges */
  uint64_t free, writing, ready, delayed, leased, expired, dead, corrupt;
  uint64_t oldest_lease_ms, oldest_ready_ms;
  uint64_t keys_live, keys_remembered, keys_capacity;
  /* totals since creation */
  uint64_t pushed, claimed, acked, released, expired_total, dead_lettered, requeued, purged;
  uint64_t recovered_writes, reclaimed, duplicates, keys_evicted, keys_full;
  uint64_t moved_out, moved_in; /* jobring_move_dead: dead jobs moved out, jobs moved in */
  uint64_t paused;              /* 1 while the queue is paused (jobring_pause), else 0 */
  /* A file-backed queue: boots it was recovered in; leases those recoveries
   * returned; half-written slots they freed. */
  uint64_t recoveries, recovered_leases, recovered_boot_writes;
  uint64_t sync_errors; /* sync always: msyncs refused after a commit or an ack (the disk failed) */
} jobring_stats;

JOBRING_API int jobring_get_stats(const jobring_queue* q, jobring_stats* out);

enum { JOBRING_STATE_READY = 0, JOBRING_STATE_DELAYED = 1, JOBRING_STATE_LEASED = 2, JOBRING_STATE_DEAD = 3 };

/* One job as peek sees it (jobring::JobInfo). */
typedef struct jobring_job_info {
  uint64_t id;
  int32_t state; /* JOBRING_STATE_* */
  uint32_t slot;
  uint32_t attempts;
  int32_t owner_pid; /* leased, owned by a process: its PID; else 0 */
  int64_t ms_until;  /* delayed: until visible; leased: until the deadline (negative: expired) */
  uint64_t enqueued_ms_ago;
  int64_t failed_ms_ago; /* dead: how long ago it died; -1 if unknown / not dead */
  uint32_t error_len;
  char error[JOBRING_MAX_ERROR_LENGTH + 1]; /* why it died (error_len bytes, then a NUL) */
  uint64_t payload_len;                     /* the payload's whole length */
  uint64_t payload_offset; /* where its first payload_copied bytes are in peek's payload buffer */
  uint64_t payload_copied;
} jobring_job_info;

/* Up to capacity jobs in state (JOBRING_STATE_*), oldest slot first, into
 * infos[0 .. *count): element i at (char*)infos + i * info_size (pass
 * sizeof(jobring_job_info)). Their payloads are copied one after the other
 * into payloads (payloads_size bytes; NULL / 0 for none) as far as they fit. */
JOBRING_API int jobring_peek(const jobring_queue* q, int state, jobring_job_info* infos, size_t info_size,
                             size_t capacity, void* payloads, size_t payloads_size, size_t* count);

/* Dead → ready (attempts reset) / gone: JOBRING_NO_SUCH_JOB if that job is not dead. */
JOBRING_API int jobring_requeue(jobring_queue* q, uint64_t dead_job);
JOBRING_API int jobring_remove_dead(jobring_queue* q, uint64_t dead_job);
/* Every dead job back to ready; how many in *count (if not NULL). */
JOBRING_API int jobring_requeue_dead(jobring_queue* q, uint64_t* count);

/* Moves q's dead jobs into the queue to (jobring::Queue::move_dead): as dead
 * jobs there, with their payload, attempts, age and note — a dead-letter
 * queue — or, with as_ready nonzero, as new ready jobs (a redrive); at most
 * limit of them (0: all). Crash-safe: a mover that dies mid-way loses none,
 * and the next move does not double one the target still holds. *moved gets
 * how many moved, *too_large how many stayed because they are larger than
 * to's max_payload, *left how many stayed for now (another mover is moving
 * them, or quarantined with a corrupt length); any may be NULL. JOBRING_FULL
 * if to had no room for them all (what moved stays moved);
 * JOBRING_INTERRUPTED after jobring_interrupt_waits();
 * JOBRING_E_INVALID_ARGUMENT if to is q's own queue. Never waits. */
JOBRING_API int jobring_move_dead(jobring_queue* q, jobring_queue* to, int as_ready, uint64_t limit,
                                  uint64_t* moved, uint64_t* too_large, uint64_t* left);

/* Pauses / resumes the queue (jobring::Queue::pause): while paused, pushes,
 * acks, releases and extends work but every claim finds nothing (blocked
 * claims sleep until the resume). The flag lives in the segment: it outlasts
 * every process. *changed (if not NULL) gets 1 if the state changed, 0 if it
 * already was so. */
JOBRING_API int jobring_pause(jobring_queue* q, int* changed);
JOBRING_API int jobring_resume(jobring_queue* q, int* changed);
/* 1 while the queue is paused, else 0 (-1 for a NULL queue); one load, not a stats pass. */
JOBRING_API int jobring_is_paused(const jobring_queue* q);

enum { JOBRING_PURGE_READY = 1, JOBRING_PURGE_DELAYED = 2, JOBRING_PURGE_DEAD = 4, JOBRING_PURGE_ALL = 7 };
/* Deletes the jobs of the JOBRING_PURGE_* bits in what (leased jobs never;
 * ALL also resets corrupt slots); how many in *count (if not NULL). */
JOBRING_API int jobring_purge(jobring_queue* q, unsigned what, uint64_t* count);

#ifdef __cplusplus
}
#endif

#endif /* JOBRING_JOBRING_H */
