#!/usr/bin/env python3
"""Jobs across languages, both ways, on one kind of queue:

  1. a Python producer (emails.py produce) -> the C++ worker
     (jobring-example-email work);
  2. a C++ producer (jobring-example-email produce) -> a Python worker
     (emails.py work).

Each worker process runs until every job is acked, then gets SIGTERM and must
exit 0. The check, each way: every job pushed was done exactly once — one
successful attempt per job in the worker's own account (the C++ worker's
output, the Python worker's record), every email text there once, and the
queue's totals agree (pushed = acked = N, released = the retries, nothing
expired, dead, or left). Exit status 0 only if both ways pass.

  cross_language.py --cxx-example build/examples/jobring-example-email [--jobs N]

The queues are private ("py2cxx.PID", "cxx2py.PID"), removed at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from typing import Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

import jobring  # noqa: E402

EMAILS_PY = os.path.join(HERE, "emails.py")
TIMEOUT = 120.0  # a watchdog: each way normally takes well under a second


class Check:
    def __init__(self) -> None:
        self.failed = 0

    def __call__(self, ok: bool, what: str) -> None:
        print(f"  {'ok  ' if ok else 'FAIL'}  {what}", flush=True)
        if not ok:
            self.failed += 1


def expected_texts(n: int) -> List[str]:
    return [f"send welcome email to user{i}@example.com" for i in range(1, n + 1)]


def wait_for_acks(q: jobring.Queue, n: int, worker: subprocess.Popen) -> bool:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if q.stats()["acked"] >= n:
            return True
        if worker.poll() is not None:
            print(f"  the worker exited early (status {worker.returncode})")
            return False
        time.sleep(0.02)
    print(f"  gave up after {TIMEOUT:.0f} s")
    return False


def stop(worker: subprocess.Popen) -> int:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)  # finish the job in hand, then exit
    try:
        return worker.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
        return -signal.SIGKILL


def check_queue(check: Check, q: jobring.Queue, n: int, retries: int) -> None:
    s = q.stats()
    check(s["pushed"] == n and s["acked"] == n, f"queue: {s['pushed']} pushed, {s['acked']} acked (want {n}, {n})")
    check(
        s["claimed"] == n + retries and s["released"] == retries,
        f"queue: {s['claimed']} claims, {s['released']} released for a retry ({retries} failed first attempts)",
    )
    check(
        s["expired_total"] == 0 and s["dead"] == 0 and s["reclaimed"] == 0,
        "queue: no lease expired or reclaimed, nothing dead: no job ran twice to completion",
    )
    left = s["ready"] + s["delayed"] + s["leased"]
    check(left == 0, f"queue: empty ({left} jobs left)")


def python_to_cxx(check: Check, cxx: str, n: int, tmp: str) -> None:
    name = f"py2cxx.{os.getpid()}"
    jobring.Queue.remove(name)
    print(f"\n1. Python producer -> C++ worker, {n} jobs, queue {name!r}", flush=True)
    out_path = os.path.join(tmp, "cxx-worker.out")
    with open(out_path, "w") as out:
        worker = subprocess.Popen([cxx, "--queue", name, "work"], stdout=out, stderr=subprocess.STDOUT)
    try:
        produced = subprocess.run([sys.executable, EMAILS_PY, "--queue", name, "produce", str(n)],
                                  capture_output=True, text=True, timeout=TIMEOUT)  # fmt: skip
        check(produced.returncode == 0, f"emails.py produce {n}: exit {produced.returncode} {produced.stderr.strip()}")
        q = jobring.Queue.open(name)
        done = wait_for_acks(q, n, worker)
        status = stop(worker)
        check(done, "every job acked by the C++ worker")
        check(status == 0, f"the C++ worker exited {status} after SIGTERM (want 0)")
        # Its account: "[worker PID] TEXT (job ID, attempt A)", then "  failed ..." if that attempt failed.
        lines = open(out_path).read().splitlines()
        attempts: List[Dict[str, object]] = []
        for line in lines:
            m = re.match(r"\[worker \d+\] (.*) \(job (\d+), attempt (\d+)\)$", line)
            if m:
                attempts.append({"text": m.group(1), "id": int(m.group(2)), "ok": True})
            elif line.startswith("  failed") and attempts:
                attempts[-1]["ok"] = False
        succeeded = Counter(a["id"] for a in attempts if a["ok"])
        texts = Counter(a["text"] for a in attempts if a["ok"])
        retries = sum(1 for a in attempts if not a["ok"])
        check(len(succeeded) == n and set(succeeded.values()) == {1},
              f"the C++ worker sent {len(succeeded)} distinct jobs, each once (want {n})")  # fmt: skip
        check(sorted(texts) == sorted(expected_texts(n)) and set(texts.values()) == {1},
              "every email the Python producer pushed was sent once, with its text intact")  # fmt: skip
        check_queue(check, q, n, retries)
        q.close()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        jobring.Queue.remove(name)
        sys.stdout.write("".join(f"     | {l}\n" for l in open(out_path).read().splitlines()[:8]))


def cxx_to_python(check: Check, cxx: str, n: int, tmp: str) -> None:
    name = f"cxx2py.{os.getpid()}"
    jobring.Queue.remove(name)
    print(f"\n2. C++ producer -> Python worker, {n} jobs, queue {name!r}", flush=True)
    record = os.path.join(tmp, "python-worker.record")
    out_path = os.path.join(tmp, "python-worker.out")
    with open(out_path, "w") as out:
        worker = subprocess.Popen([sys.executable, EMAILS_PY, "--queue", name, "work", "--record", record],
                                  stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        produced = subprocess.run([cxx, "--queue", name, "produce", str(n)], capture_output=True, text=True,
                                  timeout=TIMEOUT)  # fmt: skip
        check(produced.returncode == 0, f"jobring-example-email produce {n}: exit {produced.returncode}")
        q = jobring.Queue.open(name)
        done = wait_for_acks(q, n, worker)
        status = stop(worker)
        check(done, "every job acked by the Python worker")
        check(status == 0, f"the Python worker exited {status} after SIGTERM (want 0)")
        rows = [line.split("\t", 1) for line in open(record).read().splitlines()] if os.path.exists(record) else []
        ids = Counter(int(r[0]) for r in rows)
        texts = Counter(r[1] for r in rows)
        check(len(ids) == n and set(ids.values()) == {1},
              f"the Python worker sent {len(ids)} distinct jobs, each once (want {n})")  # fmt: skip
        check(sorted(texts) == sorted(expected_texts(n)) and set(texts.values()) == {1},
              "every email the C++ producer pushed was sent once, with its text intact")  # fmt: skip
        retries = sum(1 for line in open(out_path) if line.startswith("  failed"))
        check(retries == n // 4, f"{retries} first attempts failed and were retried (every 4th job: {n // 4})")
        check_queue(check, q, n, retries)
        q.close()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        jobring.Queue.remove(name)
        sys.stdout.write("".join(f"     | {l}\n" for l in open(out_path).read().splitlines()[:8]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cxx-example", required=True, help="the jobring-example-email binary")
    p.add_argument("--jobs", type=int, default=40, help="jobs each way (default 40)")
    args = p.parse_args()
    check = Check()
    with tempfile.TemporaryDirectory(prefix="jobring-cross.") as tmp:
        python_to_cxx(check, args.cxx_example, args.jobs, tmp)
        cxx_to_python(check, args.cxx_example, args.jobs, tmp)
    ok = check.failed == 0
    print(f"\nresult: {'OK' if ok else 'FAILED'}: {args.jobs} jobs each way, Python -> C++ and C++ -> Python, "
          f"each done once{'' if ok else f' ({check.failed} checks failed)'}")  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
