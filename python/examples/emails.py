#!/usr/bin/env python3
"""jobring's email example in Python — the twin of examples/email.cpp
(jobring-example-email), on the same queue with the same options, so that
either side can be the other language's:

  emails.py [--queue NAME] produce N   push N "send welcome email" jobs and exit
  emails.py [--queue NAME] work        run a worker until Ctrl-C / SIGTERM

Every 4th email fails on its first attempt ("SMTP server busy"), to show a
retry: the handler raises, the Worker releases the job with a backoff, and
the job comes back (attempt 2). --record FILE (work) appends "ID<TAB>TEXT"
for each email sent, for a checker (cross_language.py).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # run from the repository

import jobring  # noqa: E402

# The same options as examples/email.cpp: open_or_create compares them.
OPTIONS = dict(capacity=1024, lease=30.0, max_attempts=5)


def produce(queue_name: str, count: int) -> None:
    q = jobring.Queue.open_or_create(queue_name, **OPTIONS)
    for i in range(1, count + 1):
        q.push(f"send welcome email to user{i}@example.com", wait=10.0)  # QueueFull after 10 s


def work(queue_name: str, record: str | None) -> jobring.WorkerSummary:
    q = jobring.Queue.open_or_create(queue_name, **OPTIONS)
    fd = os.open(record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if record else -1

    def send_email(job: jobring.Job) -> None:  # raise: retried with backoff; return: acked
        print(f"[worker {os.getpid()}] {job.text} (job {job.id}, attempt {job.attempt})", flush=True)
        if job.id % 4 == 0 and job.attempt == 1:
            print("  failed (SMTP server busy): the Worker releases the job, to retry in 100-200 ms", flush=True)
            raise ConnectionError("SMTP server busy")
        if fd >= 0:
            os.write(fd, f"{job.id}\t{job.text}\n".encode())  # one write: lines never interleave

    jobring.Worker.install_signal_handlers()  # Ctrl-C / SIGTERM: finish the job in hand, then stop
    worker = jobring.Worker(q, send_email, backoff=jobring.Backoff(base=0.2), on_error=lambda job, e: None)
    return worker.run()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--queue", default="emails", help='the queue (default "emails"); created if missing')
    sub = p.add_subparsers(dest="mode", required=True)
    pp = sub.add_parser("produce", help='push N "send welcome email" jobs and exit')
    pp.add_argument("count", type=int)
    pw = sub.add_parser("work", help="claim, send and ack jobs until Ctrl-C or SIGTERM")
    pw.add_argument("--record", help='append "ID<TAB>TEXT" per email sent to this file')
    args = p.parse_args()
    try:
        if args.mode == "produce":
            if args.count < 1:
                p.error("produce needs a count >= 1")
            produce(args.queue, args.count)
            print(f'pushed {args.count} jobs to "{args.queue}"')
        else:
            print(f'worker {os.getpid()} on "{args.queue}"; Ctrl-C to stop', flush=True)
            s = work(args.queue, args.record)
            print(f"worker {os.getpid()} stopped: {s.acked} sent, {s.retried} retried, {s.dead} dead", flush=True)
    except jobring.Error as e:
        print(f"emails.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
