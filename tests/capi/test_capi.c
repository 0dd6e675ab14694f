/* The C API (include/jobring/jobring.h) from C: compiled as C99 with
 * -Wall -Wextra -Werror -pedantic and linked against libjobring.so only.
 * Every call of jobring.h, with its error paths: NULL arguments, bad names,
 * not found, already exists, options mismatch, a foreign segment, payload too
 * large, full, empty, lease lost after a takeover, no such dead job,
 * interrupted (a stop flag, jobring_interrupt_waits, and both from a signal
 * handler). Not gtest: a plain main() that counts failed CHECKs and exits 1
 * if any. */
#define _XOPEN_SOURCE 700

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "jobring/jobring.h"

static int failures = 0;
static int checks = 0;

#define CHECK(cond)                                                                             \
  do {                                                                                          \
    ++checks;                                                                                   \
    if (!(cond)) {                                                                              \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n  last error: %s\n", __FILE__, __LINE__, #cond, \
              jobring_last_error());                                                            \
      ++failures;                                                                               \
    }                                                                                           \
  } while (0)

/* The status of `call` is `want` (names both on failure). */
#define CHECK_CODE(call, want)                                                                          \
  do {                                                                                                  \
    const int got_ = (call);                                                                            \
    ++checks;                                                                                           \
    if (got_ != (want)) {                                                                               \
      fprintf(stderr, "%s:%d: %s\n  returned %d (%s), wanted %s = %d\n  last error: %s\n", __FILE__,    \
              __LINE__, #call, got_, jobring_strerror(got_), #want, (int)(want), jobring_last_error()); \
      ++failures;                                                                                       \
    }                                                                                                   \
  } while (0)

static char names[4][64];

static void sleep_ms(long ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (ms % 1000) * 1000000L;
  while (nanosleep(&ts, &ts) != 0) {
  }
}

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int contains(const char* haystack, const char* needle) { return strstr(haystack, needle) != NULL; }

/* A queue of `capacity` slots of 16 bytes at most, max_attempts 2. */
static jobring_queue* make_queue(const char* name, uint32_t capacity) {
  jobring_options o;
  jobring_queue* q = NULL;
  CHECK_CODE(jobring_options_init(&o, sizeof o), JOBRING_OK);
  o.capacity = capacity;
  o.max_payload = 16;
  o.max_attempts = 2;
  jobring_remove(name);
  CHECK_CODE(jobring_create(name, &o, &q), JOBRING_OK);
  return q;
}

static void test_version_and_strerror(void) {
  char text[64];
  int code;
  CHECK(strcmp(jobring_version(), JOBRING_VERSION_STRING) == 0);
  snprintf(text, sizeof text, "%d.%d.%d", JOBRING_VERSION_MAJOR, JOBRING_VERSION_MINOR,
           JOBRING_VERSION_PATCH);
  CHECK(strcmp(text, jobring_version()) == 0);
  for (code = 0; code <= 5; ++code) CHECK(!contains(jobring_strerror(code), "unknown"));
  for (code = JOBRING_E_INVALID_NAME; code <= JOBRING_E_NOT_SUPPORTED; ++code)
    CHECK(!contains(jobring_strerror(code), "unknown"));
  CHECK(!contains(jobring_strerror(JOBRING_E_NO_MEMORY), "unknown"));
  CHECK(!contains(jobring_strerror(JOBRING_E_INTERNAL), "unknown"));
  CHECK(contains(jobring_strerror(99), "unknown"));
  CHECK(contains(jobring_strerror(-1), "unknown"));
}

static void test_options_init(void) {
  jobring_options o;
  unsigned char raw[sizeof(jobring_options)];
  size_t i;
  const size_t short_size = offsetof(jobring_options, default_lease_ms);
  CHECK_CODE(jobring_options_init(NULL, sizeof o), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_options_init(&o, 1), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_options_init(&o, sizeof o), JOBRING_OK);
  CHECK(o.size == sizeof o && o.capacity == 1024 && o.max_payload == 1024 && o.default_lease_ms == 30000);
  CHECK(o.max_attempts == 0 && o.mode == 0 && o.group == NULL && o.dedup_keys == 0);
  CHECK(o.dedup_window_ms == 300000);
  /* A caller with an older, shorter struct: nothing past its size is written. */
  memset(raw, 0xAB, sizeof raw);
  CHECK_CODE(jobring_options_init((jobring_options*)(void*)raw, short_size), JOBRING_OK);
  for (i = short_size; i < sizeof raw; ++i) CHECK(raw[i] == 0xAB);
  CHECK_CODE(jobring_push_options_init(NULL, 64), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_claim_options_init(NULL, 64), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_push_options_init((jobring_push_options*)(void*)raw, 2), JOBRING_E_INVALID_ARGUMENT);
}

/* A short options struct from an older caller: the fields it lacks are defaults. */
static void test_short_options(void) {
  jobring_options o;
  jobring_options got;
  jobring_queue* q = NULL;
  CHECK_CODE(jobring_options_init(&o, offsetof(jobring_options, default_lease_ms)), JOBRING_OK);
  o.capacity = 8;
  o.max_payload = 32;
  o.max_attempts = 99; /* beyond o.size: not read */
  jobring_remove(names[3]);
  CHECK_CODE(jobring_create(names[3], &o, &q), JOBRING_OK);
  got.size = sizeof got;
  CHECK_CODE(jobring_queue_options(q, &got), JOBRING_OK);
  CHECK(got.capacity == 8 && got.max_payload == 32 && got.max_attempts == 0 && got.default_lease_ms == 30000);
  jobring_close(q);
  CHECK_CODE(jobring_remove(names[3]), JOBRING_OK);
}

static void test_lifecycle_errors(void) {
  jobring_options o;
  jobring_queue* q = (jobring_queue*)&o; /* not NULL: failures must clear it */
  jobring_options_init(&o, sizeof o);
  CHECK_CODE(jobring_create(NULL, &o, &q), JOBRING_E_INVALID_ARGUMENT);
  CHECK(q == NULL);
  CHECK_CODE(jobring_create(names[0], &o, NULL), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_open(NULL, &q), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_open_or_create(NULL, NULL, &q), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_create("a/b", &o, &q), JOBRING_E_INVALID_NAME);
  CHECK(contains(jobring_last_error(), "a/b"));
  CHECK_CODE(jobring_open("", &q), JOBRING_E_INVALID_NAME);
  CHECK_CODE(jobring_open(".hidden", &q), JOBRING_E_INVALID_NAME);
  o.capacity = 0;
  CHECK_CODE(jobring_create(names[0], &o, &q), JOBRING_E_INVALID_OPTIONS);
  CHECK(contains(jobring_last_error(), names[0]));
  o.size = 0;
  CHECK_CODE(jobring_create(names[0], &o, &q), JOBRING_E_INVALID_ARGUMENT);
  CHECK(contains(jobring_last_error(), "jobring_options_init"));
  jobring_remove(names[0]);
  CHECK_CODE(jobring_open(names[0], &q), JOBRING_E_NOT_FOUND);
  CHECK(q == NULL);
  CHECK(contains(jobring_last_error(), names[0]));
  CHECK_CODE(jobring_remove(names[0]), JOBRING_E_NOT_FOUND);
  CHECK_CODE(jobring_remove(NULL), JOBRING_E_INVALID_ARGUMENT);
  jobring_close(NULL); /* ignored */
}

/* A segment at the name that no jobring made. */
static void test_foreign_segment(void) {
  char shm[96];
  char junk[4096];
  jobring_queue* q = NULL;
  int fd;
  snprintf(shm, sizeof shm, "/jobring.%s", names[3]);
  fd = shm_open(shm, O_CREAT | O_RDWR | O_TRUNC, 0600);
  CHECK(fd >= 0);
  if (fd < 0) return;
  memset(junk, 'x', sizeof junk);
  CHECK(write(fd, junk, sizeof junk) == (ssize_t)sizeof junk);
  close(fd);
  CHECK_CODE(jobring_open(names[3], &q), JOBRING_E_NOT_A_QUEUE);
  CHECK(q == NULL);
  CHECK_CODE(jobring_remove(names[3]), JOBRING_OK);
}

static void test_create_open(void) {
  jobring_options o;
  jobring_options got;
  jobring_queue* a = make_queue(names[0], 2);
  jobring_queue* b = NULL;
  jobring_queue* c = NULL;
  jobring_options_init(&o, sizeof o);
  o.capacity = 2;
  o.max_payload = 16;
  o.max_attempts = 2;
  CHECK_CODE(jobring_create(names[0], &o, &b), JOBRING_E_ALREADY_EXISTS);
  CHECK_CODE(jobring_open(names[0], &b), JOBRING_OK);
  CHECK_CODE(jobring_open_or_create(names[0], &o, &c), JOBRING_OK);
  jobring_close(c);
  o.capacity = 4;
  CHECK_CODE(jobring_open_or_create(names[0], &o, &c), JOBRING_E_OPTIONS_MISMATCH);
  CHECK(contains(jobring_last_error(), "capacity"));
  CHECK(strcmp(jobring_queue_name(a), names[0]) == 0);
  CHECK(jobring_queue_name(NULL) == NULL);
  CHECK(jobring_queue_incarnation(a) != 0 && jobring_queue_incarnation(a) == jobring_queue_incarnation(b));
  CHECK(jobring_queue_incarnation(NULL) == 0);
  got.size = sizeof got;
  CHECK_CODE(jobring_queue_options(b, &got), JOBRING_OK);
  CHECK(got.capacity == 2 && got.max_payload == 16 && got.max_attempts == 2 && got.group == NULL);
  CHECK_CODE(jobring_queue_options(NULL, &got), JOBRING_E_INVALID_ARGUMENT);
  got.size = 0;
  CHECK_CODE(jobring_queue_options(b, &got), JOBRING_E_INVALID_ARGUMENT);
  jobring_close(b);
  jobring_close(a);
  /* open_or_create of a new name creates it. */
  jobring_remove(names[1]);
  CHECK_CODE(jobring_open_or_create(names[1], NULL, &c), JOBRING_OK);
  got.size = sizeof got;
  CHECK_CODE(jobring_queue_options(c, &got), JOBRING_OK);
  CHECK(got.capacity == 1024);
  jobring_close(c);
  CHECK_CODE(jobring_remove(names[1]), JOBRING_OK);
}

static void test_push(jobring_queue* q) {
  jobring_push_options p;
  uint64_t id = 77, id2 = 0;
  int dup = 5;
  char big[17];
  char key[65];
  memset(big, 'b', sizeof big);
  memset(key, 'k', sizeof key);
  CHECK_CODE(jobring_push(NULL, "x", 1, NULL, &id, &dup), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_push(q, NULL, 1, NULL, &id, &dup), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_push(q, big, sizeof big, NULL, &id, &dup), JOBRING_E_PAYLOAD_TOO_LARGE);
  CHECK(contains(jobring_last_error(), "max_payload is 16"));
  CHECK_CODE(jobring_push_options_init(&p, sizeof p), JOBRING_OK);
  p.delay_ms = -5;
  CHECK_CODE(jobring_push(q, "x", 1, &p, &id, &dup), JOBRING_E_INVALID_ARGUMENT);
  p.delay_ms = 0;
  p.wait_ms = -2;
  CHECK_CODE(jobring_push(q, "x", 1, &p, &id, &dup), JOBRING_E_INVALID_ARGUMENT);
  p.wait_ms = 0;
  p.key = key;
  p.key_len = sizeof key;
  CHECK_CODE(jobring_push(q, "x", 1, &p, &id, &dup), JOBRING_E_INVALID_ARGUMENT);
  p.key = NULL;
  p.key_len = 3;
  CHECK_CODE(jobring_push(q, "x", 1, &p, &id, &dup), JOBRING_E_INVALID_ARGUMENT);
  p.size = 0;
  CHECK_CODE(jobring_push(q, "x", 1, &p, &id, &dup), JOBRING_E_INVALID_ARGUMENT);
  /* A keyed push, and its duplicate. */
  jobring_push_options_init(&p, sizeof p);
  p.key = "key-1";
  p.key_len = 5;
  CHECK_CODE(jobring_push(q, "hello", 5, &p, &id, &dup), JOBRING_OK);
  CHECK(id == 1 && dup == 0);
  CHECK_CODE(jobring_push(q, "again", 5, &p, &id2, &dup), JOBRING_OK);
  CHECK(id2 == id && dup == 1);
  CHECK_CODE(jobring_push(q, NULL, 0, NULL, NULL, NULL), JOBRING_OK); /* empty payload, no outputs */
  /* Full (capacity 2), with and without a wait. */
  CHECK_CODE(jobring_push(q, "x", 1, NULL, &id, &dup), JOBRING_FULL);
  CHECK(id == 0);
  p.key = NULL;
  p.key_len = 0;
  p.wait_ms = 20;
  CHECK_CODE(jobring_push(q, "x", 1, &p, &id, &dup), JOBRING_FULL);
}

static void test_job_buffer_and_claim(jobring_queue* q, jobring_job* job) {
  jobring_claim_options c;
  size_t len = 99;
  const void* first_buffer;
  const char* key;
  CHECK_CODE(jobring_job_new(NULL), JOBRING_E_INVALID_ARGUMENT);
  CHECK(jobring_job_id(NULL) == 0 && jobring_job_attempt(NULL) == 0 && jobring_job_incarnation(NULL) == 0);
  CHECK(jobring_job_payload(NULL, &len) == NULL && len == 0);
  len = 99;
  CHECK(jobring_job_key(NULL, &len) == NULL && len == 0);
  CHECK_CODE(jobring_claim(NULL, job, NULL), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_claim(q, NULL, NULL), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_claim_options_init(&c, sizeof c), JOBRING_OK);
  c.lease_ms = -1;
  CHECK_CODE(jobring_claim(q, job, &c), JOBRING_E_INVALID_ARGUMENT);
  c.lease_ms = 0;
  c.wait_ms = -3;
  CHECK_CODE(jobring_claim(q, job, &c), JOBRING_E_INVALID_ARGUMENT);
  c.wait_ms = 0;
  c.owner = 7;
  CHECK_CODE(jobring_claim(q, job, &c), JOBRING_E_INVALID_ARGUMENT);
  CHECK(contains(jobring_last_error(), "owner 7"));
  c.size = 3;
  CHECK_CODE(jobring_claim(q, job, &c), JOBRING_E_INVALID_ARGUMENT);
  c.size = sizeof c;
  /* The keyed job of test_push. */
  CHECK_CODE(jobring_claim(q, job, NULL), JOBRING_OK);
  CHECK(jobring_job_id(job) == 1 && jobring_job_attempt(job) == 1);
  CHECK(jobring_job_incarnation(job) == jobring_queue_incarnation(q));
  first_buffer = jobring_job_payload(job, &len);
  CHECK(len == 5 && memcmp(first_buffer, "hello", 5) == 0);
  key = jobring_job_key(job, &len);
  CHECK(len == 5 && memcmp(key, "key-1", 5) == 0);
  CHECK_CODE(jobring_ack(q, job), JOBRING_OK);
  CHECK_CODE(jobring_ack(q, job), JOBRING_LEASE_LOST);
  /* The empty payload; the buffer is reused, not reallocated. */
  CHECK_CODE(jobring_claim(q, job, NULL), JOBRING_OK);
  CHECK(jobring_job_payload(job, &len) == first_buffer && len == 0);
  jobring_job_key(job, &len);
  CHECK(len == 0);
  CHECK_CODE(jobring_ack(q, job), JOBRING_OK);
  /* Empty, with and without a wait. */
  CHECK_CODE(jobring_claim(q, job, NULL), JOBRING_EMPTY);
  c.owner = JOBRING_OWNER_DETACHED;
  c.wait_ms = 30;
  {
    const long long start = now_ms();
    CHECK_CODE(jobring_claim(q, job, &c), JOBRING_EMPTY);
    CHECK(now_ms() - start >= 25);
  }
}

static void test_lease_text(jobring_queue* q, jobring_job* job) {
  jobring_lease l, parsed;
  char text[JOBRING_LEASE_TEXT_SIZE];
  char tiny[4];
  CHECK_CODE(jobring_push(q, "lease", 5, NULL, NULL, NULL), JOBRING_OK);
  CHECK_CODE(jobring_claim(q, job, NULL), JOBRING_OK);
  CHECK_CODE(jobring_job_lease(NULL, &l), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_job_lease(job, NULL), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_job_lease(job, &l), JOBRING_OK);
  CHECK(l.job == jobring_job_id(job) && l.token != 0);
  CHECK_CODE(jobring_lease_format(&l, text, sizeof text), JOBRING_OK);
  CHECK_CODE(jobring_lease_format(&l, tiny, sizeof tiny), JOBRING_E_INVALID_ARGUMENT);
  CHECK(tiny[0] == '\0');
  CHECK_CODE(jobring_lease_format(NULL, text, sizeof text), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_lease_parse(text, &parsed), JOBRING_OK);
  CHECK(parsed.job == l.job && parsed.slot == l.slot && parsed.token == l.token);
  CHECK_CODE(jobring_lease_parse("1.2", &parsed), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_lease_parse("garbage", &parsed), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_lease_parse(NULL, &parsed), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_lease_parse(text, NULL), JOBRING_E_INVALID_ARGUMENT);
  /* Handed over as text: extend, then ack through the parsed lease. */
  CHECK_CODE(jobring_extend_lease(q, &parsed, 0), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_extend_lease(NULL, &parsed, 1000), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_extend_lease(q, &parsed, 1000), JOBRING_OK);
  CHECK(parsed.token != l.token);
  CHECK_CODE(jobring_ack_lease(q, &l), JOBRING_LEASE_LOST); /* the old token */
  CHECK_CODE(jobring_ack_lease(NULL, &l), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_ack_lease(q, &parsed), JOBRING_OK);
  CHECK_CODE(jobring_ack(q, job), JOBRING_LEASE_LOST);
}

/* release, give_back, extend; max_attempts 2 dead-letters, then peek,
 * requeue, remove_dead, requeue_dead. */
static void test_release_and_dead(jobring_queue* q, jobring_job* job) {
  jobring_lease l;
  uint64_t id = 0, n = 99;
  CHECK_CODE(jobring_push(q, "poison", 6, NULL, &id, NULL), JOBRING_OK);
  CHECK_CODE(jobring_claim(q, job, NULL), JOBRING_OK);
  CHECK(jobring_job_attempt(job) == 1);
  CHECK_CODE(jobring_give_back(q, job), JOBRING_OK); /* not counted */
  CHECK_CODE(jobring_give_back(q, job), JOBRING_LEASE_LOST);
  CHECK_CODE(jobring_give_back(NULL, job), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_claim(q, job, NULL), JOBRING_OK);
  CHECK(jobring_job_attempt(job) == 1);
  CHECK_CODE(jobring_extend(q, job, 0), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_extend(NULL, job, 10), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_extend(q, job, 60000), JOBRING_OK);
  CHECK_CODE(jobring_release(q, job, -1, NULL), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_release(q, NULL, 0, NULL), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_release(q, job, 0, "first failure"), JOBRING_OK);
  CHECK_CODE(jobring_release(q, job, 0, NULL), JOBRING_LEASE_LOST);
  CHECK_CODE(jobring_claim(q, job, NULL), JOBRING_OK);
  CHECK(jobring_job_attempt(job) == 2 && jobring_job_id(job) == id);
  jobring_job_lease(job, &l);
  CHECK_CODE(jobring_release_lease(q, &l, 0, "boom"), JOBRING_OK); /* the last attempt: dead */
  CHECK_CODE(jobring_release_lease(q, &l, 0, NULL), JOBRING_LEASE_LOST);
  CHECK_CODE(jobring_give_back_lease(q, &l), JOBRING_LEASE_LOST);
  CHECK_CODE(jobring_claim(q, job, NULL), JOBRING_EMPTY);
  {
    jobring_job_info info[3];
    char payloads[4];
    size_t count = 99;
    CHECK_CODE(
        jobring_peek(q, JOBRING_STATE_DEAD, info, sizeof info[0], 3, payloads, sizeof payloads, &count),
        JOBRING_OK);
    CHECK(count == 1);
    CHECK(info[0].id == id && info[0].state == JOBRING_STATE_DEAD && info[0].attempts == 2);
    CHECK(info[0].failed_ms_ago >= 0 && info[0].error_len == 4 && strcmp(info[0].error, "boom") == 0);
    CHECK(info[0].payload_len == 6 && info[0].payload_offset == 0 && info[0].payload_copied == 4);
    CHECK(memcmp(payloads, "pois", 4) == 0);
    CHECK_CODE(jobring_peek(q, 9, info, sizeof info[0], 3, NULL, 0, &count), JOBRING_E_INVALID_ARGUMENT);
    CHECK_CODE(jobring_peek(q, JOBRING_STATE_DEAD, NULL, sizeof info[0], 3, NULL, 0, &count),
               JOBRING_E_INVALID_ARGUMENT);
    CHECK_CODE(jobring_peek(NULL, JOBRING_STATE_DEAD, info, sizeof info[0], 3, NULL, 0, &count),
               JOBRING_E_INVALID_ARGUMENT);
    CHECK_CODE(jobring_peek(q, JOBRING_STATE_READY, info, sizeof info[0], 3, NULL, 0, &count), JOBRING_OK);
    CHECK(count == 0);
  }
  CHECK_CODE(jobring_requeue(q, id + 100), JOBRING_NO_SUCH_JOB);
  CHECK_CODE(jobring_requeue(NULL, id), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_requeue(q, id), JOBRING_OK);
  CHECK_CODE(jobring_requeue(q, id), JOBRING_NO_SUCH_JOB);
  /* Dead again (attempts were reset: two more), then removed. */
  CHECK_CODE(jobring_claim(q, job, NULL), JOBRING_OK);
  CHECK(jobring_job_attempt(job) == 1);
  CHECK_CODE(jobring_release(q, job, 0, NULL), JOBRING_OK);
  CHECK_CODE(jobring_claim(q, job, NULL), JOBRING_OK);
  CHECK_CODE(jobring_release(q, job, 0, NULL), JOBRING_OK);
  CHECK_CODE(jobring_remove_dead(q, id), JOBRING_OK);
  CHECK_CODE(jobring_remove_dead(q, id), JOBRING_NO_SUCH_JOB);
  CHECK_CODE(jobring_remove_dead(NULL, id), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_requeue_dead(q, &n), JOBRING_OK);
  CHECK(n == 0);
  CHECK_CODE(jobring_requeue_dead(q, NULL), JOBRING_OK);
  CHECK_CODE(jobring_requeue_dead(NULL, &n), JOBRING_E_INVALID_ARGUMENT);
}

/* Guarantee 4 through the C API: a lease that ran out and was taken over by
 * another handle is LEASE_LOST for every call of its first holder. */
static void test_lease_lost_after_takeover(jobring_queue* q, jobring_job* job) {
  jobring_queue* other = NULL;
  jobring_job* rival = NULL;
  jobring_claim_options c;
  CHECK_CODE(jobring_open(names[0], &other), JOBRING_OK);
  CHECK_CODE(jobring_job_new(&rival), JOBRING_OK);
  CHECK_CODE(jobring_push(q, "slow", 4, NULL, NULL, NULL), JOBRING_OK);
  jobring_claim_options_init(&c, sizeof c);
  c.lease_ms = 1;
  CHECK_CODE(jobring_claim(q, job, &c), JOBRING_OK);
  sleep_ms(50); /* far past the 1 ms lease */
  CHECK_CODE(jobring_claim(other, rival, NULL), JOBRING_OK);
  CHECK(jobring_job_id(rival) == jobring_job_id(job) && jobring_job_attempt(rival) == 2);
  CHECK_CODE(jobring_extend(q, job, 1000), JOBRING_LEASE_LOST);
  CHECK_CODE(jobring_release(q, job, 0, NULL), JOBRING_LEASE_LOST);
  CHECK_CODE(jobring_give_back(q, job), JOBRING_LEASE_LOST);
  CHECK_CODE(jobring_ack(q, job), JOBRING_LEASE_LOST);
  CHECK(contains(jobring_last_error(), "lease"));
  CHECK_CODE(jobring_ack(other, rival), JOBRING_OK);
  jobring_job_free(rival);
  jobring_close(other);
}

static void test_stats(jobring_queue* q) {
  jobring_stats s;
  memset(&s, 0xFF, sizeof s);
  s.size = 0;
  CHECK_CODE(jobring_get_stats(q, &s), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_get_stats(NULL, &s), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_get_stats(q, NULL), JOBRING_E_INVALID_ARGUMENT);
  /* An older caller's struct that ends after `free`: nothing beyond is written. */
  s.size = offsetof(jobring_stats, writing);
  CHECK_CODE(jobring_get_stats(q, &s), JOBRING_OK);
  CHECK(s.free == 2 && s.writing == UINT64_MAX);
  s.size = sizeof s;
  CHECK_CODE(jobring_get_stats(q, &s), JOBRING_OK);
  CHECK(s.free == 2 && s.writing == 0 && s.ready == 0 && s.dead == 0 && s.keys_full == 0);
  CHECK(s.pushed == 7 && s.acked == 4 && s.duplicates == 1 && s.dead_lettered == 2 && s.requeued == 1);
  CHECK(s.purged == 3 && s.expired_total == 1 && s.keys_capacity >= 16 && s.keys_remembered == 1);
}

static jobring_stop* volatile signal_stop = NULL;
static void on_alarm_interrupt(int sig) {
  (void)sig;
  jobring_interrupt_waits();
}
static void on_alarm_stop(int sig) {
  (void)sig;
  jobring_stop_set(signal_stop, 1);
  jobring_wake_waits();
}

/* Arms a one-shot SIGALRM in `ms` handled by `handler` (no SA_RESTART). */
static void alarm_in(long ms, void (*handler)(int)) {
  struct sigaction sa;
  struct itimerval t;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGALRM, &sa, NULL);
  memset(&t, 0, sizeof t);
  t.it_value.tv_sec = ms / 1000;
  t.it_value.tv_usec = (ms % 1000) * 1000;
  setitimer(ITIMER_REAL, &t, NULL);
}

static void test_interrupts(jobring_queue* q, jobring_job* job) {
  jobring_claim_options c;
  jobring_push_options p;
  jobring_stop* stop = NULL;
  long long start;
  CHECK_CODE(jobring_stop_new(NULL), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_stop_new(&stop), JOBRING_OK);
  jobring_claim_options_init(&c, sizeof c);
  jobring_push_options_init(&p, sizeof p);
  /* A stop flag already set: the waiting claim and push are interrupted. */
  c.wait_ms = 10000;
  c.stop = stop;
  jobring_stop_set(stop, 1);
  start = now_ms();
  CHECK_CODE(jobring_claim(q, job, &c), JOBRING_INTERRUPTED);
  CHECK_CODE(jobring_push(q, "a", 1, NULL, NULL, NULL), JOBRING_OK);
  CHECK_CODE(jobring_push(q, "b", 1, NULL, NULL, NULL), JOBRING_OK);
  p.wait_ms = 10000;
  p.stop = stop;
  CHECK_CODE(jobring_push(q, "c", 1, &p, NULL, NULL), JOBRING_INTERRUPTED);
  CHECK(now_ms() - start < 5000);
  jobring_stop_set(stop, 0);
  CHECK_CODE(jobring_purge(q, JOBRING_PURGE_ALL, NULL), JOBRING_OK);
  /* The flag set by a signal handler during a wait for ever. */
  signal_stop = stop;
  c.wait_ms = -1;
  alarm_in(50, on_alarm_stop);
  CHECK_CODE(jobring_claim(q, job, &c), JOBRING_INTERRUPTED);
  jobring_stop_set(stop, 0);
  /* jobring_interrupt_waits from a signal handler, until cleared. */
  c.stop = NULL;
  alarm_in(50, on_alarm_interrupt);
  CHECK_CODE(jobring_claim(q, job, &c), JOBRING_INTERRUPTED);
  c.wait_ms = 10;
  CHECK_CODE(jobring_claim(q, job, &c), JOBRING_INTERRUPTED);
  jobring_clear_interrupt();
  CHECK_CODE(jobring_claim(q, job, &c), JOBRING_EMPTY);
  jobring_stop_set(NULL, 1); /* ignored */
  jobring_stop_free(stop);
  jobring_stop_free(NULL);
}

/* jobring_move_dead: two dead jobs into a dead-letter queue with room for
 * one (JOBRING_FULL, one moved, its note kept), then the rest, then back as
 * ready jobs; the error paths. */
static void test_move_dead(jobring_job* job) {
  jobring_queue* src = make_queue(names[1], 4);
  jobring_queue* dlq = make_queue(names[2], 1);
  uint64_t moved = 99, too_large = 99;
  int i;
  if (src == NULL || dlq == NULL) return;
  for (i = 0; i < 2; ++i) {
    CHECK_CODE(jobring_push(src, "poison", 6, NULL, NULL, NULL), JOBRING_OK);
    CHECK_CODE(jobring_claim(src, job, NULL), JOBRING_OK);
    CHECK_CODE(jobring_release(src, job, 0, "one"), JOBRING_OK);
    CHECK_CODE(jobring_claim(src, job, NULL), JOBRING_OK);
    CHECK_CODE(jobring_release(src, job, 0, "two"), JOBRING_OK); /* dead */
  }
  CHECK_CODE(jobring_move_dead(src, dlq, 0, 0, &moved, &too_large, NULL), JOBRING_FULL);
  CHECK(moved == 1 && too_large == 0);
  {
    jobring_job_info info;
    size_t count = 0;
    jobring_stats s;
    CHECK_CODE(jobring_peek(dlq, JOBRING_STATE_DEAD, &info, sizeof info, 1, NULL, 0, &count), JOBRING_OK);
    CHECK(count == 1 && info.attempts == 2 && strcmp(info.error, "two") == 0);
    s.size = sizeof s;
    CHECK_CODE(jobring_get_stats(src, &s), JOBRING_OK);
    CHECK(s.dead == 1 && s.moved_out == 1 && s.moved_in == 0);
  }
  CHECK_CODE(jobring_move_dead(dlq, src, 1, 5, &moved, NULL, NULL), JOBRING_OK); /* redrive */
  CHECK(moved == 1);
  CHECK_CODE(jobring_move_dead(src, dlq, 0, 0, NULL, NULL, NULL), JOBRING_OK);
  CHECK_CODE(jobring_move_dead(src, src, 0, 0, &moved, NULL, NULL), JOBRING_E_INVALID_ARGUMENT);
  CHECK(moved == 0 && contains(jobring_last_error(), "itself"));
  CHECK_CODE(jobring_move_dead(NULL, dlq, 0, 0, NULL, NULL, NULL), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_move_dead(src, NULL, 0, 0, NULL, NULL, NULL), JOBRING_E_INVALID_ARGUMENT);
  jobring_close(src);
  jobring_close(dlq);
  CHECK_CODE(jobring_remove(names[1]), JOBRING_OK);
  CHECK_CODE(jobring_remove(names[2]), JOBRING_OK);
}

/* jobring_pause / jobring_resume: claims find nothing while paused, pushes
 * go on, stats says so; the error paths. */
static void test_pause(jobring_job* job) {
  jobring_queue* q = make_queue(names[3], 4);
  jobring_stats s;
  int changed = 99;
  if (q == NULL) return;
  CHECK_CODE(jobring_push(q, "a", 1, NULL, NULL, NULL), JOBRING_OK);
  CHECK_CODE(jobring_pause(q, &changed), JOBRING_OK);
  CHECK(changed == 1);
  CHECK_CODE(jobring_pause(q, &changed), JOBRING_OK);
  CHECK(changed == 0);
  CHECK_CODE(jobring_claim(q, job, NULL), JOBRING_EMPTY);
  CHECK_CODE(jobring_push(q, "b", 1, NULL, NULL, NULL), JOBRING_OK);
  s.size = sizeof s;
  CHECK_CODE(jobring_get_stats(q, &s), JOBRING_OK);
  CHECK(s.paused == 1 && s.ready == 2 && jobring_is_paused(q) == 1);
  CHECK_CODE(jobring_resume(q, NULL), JOBRING_OK);
  CHECK_CODE(jobring_resume(q, &changed), JOBRING_OK);
  CHECK(changed == 0);
  CHECK_CODE(jobring_claim(q, job, NULL), JOBRING_OK);
  CHECK(jobring_is_paused(q) == 0 && jobring_is_paused(NULL) == -1);
  CHECK_CODE(jobring_pause(NULL, &changed), JOBRING_E_INVALID_ARGUMENT);
  CHECK(changed == 0);
  CHECK_CODE(jobring_resume(NULL, NULL), JOBRING_E_INVALID_ARGUMENT);
  jobring_close(q);
  CHECK_CODE(jobring_remove(names[3]), JOBRING_OK);
}

/* jobring_claim_any: the first queue in the order given that has a job;
 * empty with none; a wait on both ended by a stop flag; the error paths. */
static void test_claim_any(jobring_job* job) {
  jobring_queue* qs[2];
  jobring_claim_options o;
  size_t index = 99;
  qs[0] = make_queue(names[1], 4);
  qs[1] = make_queue(names[2], 4);
  if (qs[0] == NULL || qs[1] == NULL) return;
  CHECK_CODE(jobring_claim_any(qs, 2, job, NULL, &index), JOBRING_EMPTY);
  CHECK_CODE(jobring_push(qs[1], "second", 6, NULL, NULL, NULL), JOBRING_OK);
  CHECK_CODE(jobring_claim_any(qs, 2, job, NULL, &index), JOBRING_OK);
  {
    size_t len = 0;
    CHECK(jobring_job_payload(job, &len) != NULL && len == 6 && index == 1);
  }
  CHECK_CODE(jobring_ack(qs[1], job), JOBRING_OK);
  CHECK_CODE(jobring_push(qs[1], "b", 1, NULL, NULL, NULL), JOBRING_OK);
  CHECK_CODE(jobring_push(qs[0], "a", 1, NULL, NULL, NULL), JOBRING_OK);
  CHECK_CODE(jobring_claim_any(qs, 2, job, NULL, &index), JOBRING_OK);
  CHECK(index == 0);
  CHECK_CODE(jobring_claim_any(qs, 2, job, NULL, NULL), JOBRING_OK);
  CHECK_CODE(jobring_claim_options_init(&o, sizeof o), JOBRING_OK);
  o.wait_ms = 30;
  CHECK_CODE(jobring_claim_any(qs, 2, job, &o, &index), JOBRING_EMPTY);
  o.wait_ms = -2;
  CHECK_CODE(jobring_claim_any(qs, 2, job, &o, &index), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_claim_any(qs, 0, job, NULL, &index), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_claim_any(NULL, 2, job, NULL, &index), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_claim_any(qs, 2, NULL, NULL, &index), JOBRING_E_INVALID_ARGUMENT);
  jobring_close(qs[0]);
  jobring_close(qs[1]);
  CHECK_CODE(jobring_remove(names[1]), JOBRING_OK);
  CHECK_CODE(jobring_remove(names[2]), JOBRING_OK);
}

static void test_purge(jobring_queue* q) {
  jobring_push_options p;
  uint64_t n = 99;
  jobring_push_options_init(&p, sizeof p);
  p.delay_ms = 60000;
  CHECK_CODE(jobring_push(q, "later", 5, &p, NULL, NULL), JOBRING_OK);
  CHECK_CODE(jobring_push(q, "now", 3, NULL, NULL, NULL), JOBRING_OK);
  CHECK_CODE(jobring_purge(q, 8, &n), JOBRING_E_INVALID_ARGUMENT);
  CHECK(n == 0);
  CHECK_CODE(jobring_purge(NULL, JOBRING_PURGE_ALL, &n), JOBRING_E_INVALID_ARGUMENT);
  CHECK_CODE(jobring_purge(q, JOBRING_PURGE_DELAYED, &n), JOBRING_OK);
  CHECK(n == 1);
  CHECK_CODE(jobring_purge(q, JOBRING_PURGE_READY | JOBRING_PURGE_DEAD, &n), JOBRING_OK);
  CHECK(n == 1);
  CHECK_CODE(jobring_purge(q, JOBRING_PURGE_ALL, &n), JOBRING_OK);
  CHECK(n == 0);
}

int main(void) {
  jobring_queue* q;
  jobring_job* job = NULL;
  int i;
  for (i = 0; i < 4; ++i) snprintf(names[i], sizeof names[i], "capi-c.%ld.%d", (long)getpid(), i);
  test_version_and_strerror();
  test_options_init();
  test_short_options();
  test_lifecycle_errors();
  test_foreign_segment();
  test_create_open();
  q = make_queue(names[0], 2);
  CHECK_CODE(jobring_job_new(&job), JOBRING_OK);
  if (q != NULL && job != NULL) {
    test_push(q);
    test_job_buffer_and_claim(q, job);
    test_lease_text(q, job);
    test_release_and_dead(q, job);
    test_lease_lost_after_takeover(q, job);
    test_purge(q);
    test_stats(q);
    test_interrupts(q, job);
    test_move_dead(job);
    test_pause(job);
    test_claim_any(job);
  }
  jobring_job_free(job);
  jobring_job_free(NULL);
  jobring_close(q);
  CHECK_CODE(jobring_remove(names[0]), JOBRING_OK);
  printf("%d checks, %d failed\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
