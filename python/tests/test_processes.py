"""Python Workers in their own processes, stopped the ways a real one is:
SIGTERM (graceful), a second SIGTERM (at once), SIGKILL mid-job (the job is
redelivered), SIGSTOP past the lease (the lease is lost and the result
discarded), Ctrl-C without signal handlers. Generous bounds and a watchdog;
no timing assertions."""

from __future__ import annotations

import signal
import time

from conftest import LONG_WAIT

import jobring

# A worker process: handles jobs of queue argv[1] until stopped; prints what
# happens, one line each. The payload says what the handler does:
#   "sleep"   ctx.sleep(LONG) — returns early at a stop
#   "hang"    time.sleep in a loop, ignoring stops (until the parent's file appears)
#   "stall"   like hang, stopping when its job is cancelled
#   anything else: done at once
WORKER = """
import jobring, os, sys, threading, time
q = jobring.Queue.open(sys.argv[1])
lock = threading.Lock()

def say(*words):
    # One whole line at a time: the handler's thread and the heartbeat's
    # (the hooks) print at once, and print() writes a line in pieces.
    with lock:
        sys.stdout.write(" ".join(str(w) for w in words) + "\\n")
        sys.stdout.flush()

install = sys.argv[2] == "install"
grace = float(sys.argv[3])

def handle(job, ctx):
    say("started", job.id, job.attempt)
    if job.text == "sleep":
        say("slept", ctx.sleep(60), ctx.stopping)
    elif job.text in ("hang", "stall"):
        while not os.path.exists(sys.argv[4]):
            if job.text == "stall" and ctx.cancelled:
                break
            time.sleep(0.01)
        say("cancelled" if ctx.cancelled else "finished")
    say("done", job.id)

if install:
    jobring.Worker.install_signal_handlers()
w = jobring.Worker(
    q, handle, grace=grace,
    on_abandon=lambda job: say("abandon", job.id),
    on_lease_lost=lambda job: say("lost", job.id),
)
say("ready")
s = w.run()
say("summary", s.claimed, s.acked, s.abandoned, s.lease_lost, s.stopped)
"""


def test_sigterm_lets_the_job_in_hand_finish(child, make_queue, tmp_path) -> None:
    q = make_queue()
    c = child(WORKER, q.name, "install", str(LONG_WAIT), str(tmp_path / "never"))
    c.expect("ready")
    job_id = q.push("sleep")
    q.push("never claimed")
    assert c.expect("started") == f"started {job_id} 1"
    c.signal(signal.SIGTERM)
    assert c.expect("slept") == "slept False True"  # ctx.sleep returned early; ctx.stopping
    assert c.expect("summary") == "summary 1 1 0 0 True"
    status, _, err = c.finish()
    assert status == 0, err
    st = q.stats()
    assert st["acked"] == 1 and st["ready"] == 1


def test_a_second_sigterm_releases_the_job_at_once(child, make_queue, tmp_path) -> None:
    q = make_queue()
    go = tmp_path / "go"
    c = child(WORKER, q.name, "install", str(LONG_WAIT), str(go))
    c.expect("ready")
    job_id = q.push("hang")
    c.expect("started")
    c.signal(signal.SIGTERM)
    time.sleep(0.2)
    assert q.claim() is None  # still in hand: the grace period is long
    c.signal(signal.SIGTERM)
    assert c.expect("abandon") == f"abandon {job_id}"
    again = q.claim(wait=LONG_WAIT)
    assert again is not None and again.id == job_id and again.attempt == 2
    go.touch()
    assert c.expect("summary") == "summary 1 0 1 0 True"
    assert c.finish()[0] == 0
    again.ack()


def test_the_grace_period_runs_out(child, make_queue, tmp_path) -> None:
    q = make_queue()
    go = tmp_path / "go"
    c = child(WORKER, q.name, "install", "0.1", str(go))
    c.expect("ready")
    job_id = q.push("hang")
    c.expect("started")
    c.signal(signal.SIGTERM)
    assert c.expect("abandon") == f"abandon {job_id}"
    again = q.claim(wait=LONG_WAIT)
    assert again is not None and again.attempt == 2
    go.touch()
    assert c.expect("summary") == "summary 1 0 1 0 True"
    assert c.finish()[0] == 0
    again.ack()


def test_sigkill_mid_job_the_job_is_redelivered(child, make_queue, tmp_path) -> None:
    q = make_queue(lease=0.5)
    c = child(WORKER, q.name, "install", str(LONG_WAIT), str(tmp_path / "never"))
    c.expect("ready")
    job_id = q.push("hang")
    assert c.expect("started") == f"started {job_id} 1"
    c.signal(signal.SIGKILL)
    status, _, _ = c.finish()
    assert status == -signal.SIGKILL
    # Its heartbeat died with it: the lease runs out (at once with jobring-janitor).
    again = q.claim(wait=LONG_WAIT)
    assert again is not None and again.id == job_id and again.attempt == 2
    again.ack()
    assert q.stats()["acked"] == 1


def test_sigkill_then_another_python_worker_does_the_job(child, make_queue, tmp_path) -> None:
    q = make_queue(lease=0.5)
    first = child(WORKER, q.name, "install", str(LONG_WAIT), str(tmp_path / "never"))
    first.expect("ready")
    job_id = q.push("stall")
    first.expect("started")
    first.signal(signal.SIGKILL)
    first.finish()
    second = child(WORKER, q.name, "install", str(LONG_WAIT), str(tmp_path / "go"))
    second.expect("ready")
    (tmp_path / "go").touch()
    assert second.expect("started") == f"started {job_id} 2"
    assert second.expect("done") == f"done {job_id}"
    second.signal(signal.SIGTERM)
    assert second.expect("summary") == "summary 1 1 0 0 True"
    assert second.finish()[0] == 0


def test_a_stopped_process_loses_its_lease_and_its_result(child, make_queue, tmp_path) -> None:
    """SIGSTOP past the lease: the heartbeat cannot extend it, another worker
    takes the job over; after SIGCONT the heartbeat finds the lease lost,
    ctx.cancelled turns true, and the result is discarded (no ack)."""
    q = make_queue(lease=0.3)
    c = child(WORKER, q.name, "install", str(LONG_WAIT), str(tmp_path / "never"))
    c.expect("ready")
    job_id = q.push("stall")
    c.expect("started")
    c.signal(signal.SIGSTOP)
    try:
        taken = q.claim(lease=LONG_WAIT, wait=LONG_WAIT)
        assert taken is not None and taken.id == job_id and taken.attempt == 2
    finally:
        c.signal(signal.SIGCONT)
    # The hook (heartbeat thread) and the handler see the loss at once: the
    # hook's line may come before, between or after the handler's two.
    lines = [c.expect(""), c.expect(""), c.expect("")]
    assert sorted(lines) == sorted([f"lost {job_id}", "cancelled", f"done {job_id}"])
    assert lines.index("cancelled") < lines.index(f"done {job_id}")
    c.signal(signal.SIGTERM)
    assert c.expect("summary") == "summary 1 0 0 1 True"
    assert c.finish()[0] == 0
    taken.ack()  # ours: the stopped worker did not ack it
    assert q.stats()["acked"] == 1


def test_ctrl_c_without_signal_handlers_releases_the_job_and_raises(child, make_queue, tmp_path) -> None:
    q = make_queue()
    c = child(WORKER, q.name, "no", str(LONG_WAIT), str(tmp_path / "never"))
    c.expect("ready")
    job_id = q.push("hang")
    c.expect("started")
    c.signal(signal.SIGINT)
    status, _, err = c.finish()
    assert status != 0 and "KeyboardInterrupt" in err
    again = q.claim()  # released at once, the attempt counted
    assert again is not None and again.id == job_id and again.attempt == 2
    again.ack()


def test_ctrl_c_stops_an_idle_worker_gracefully(child, make_queue, tmp_path) -> None:
    q = make_queue()
    c = child(WORKER, q.name, "install", str(LONG_WAIT), str(tmp_path / "never"))
    c.expect("ready")
    time.sleep(0.2)
    c.signal(signal.SIGINT)
    assert c.expect("summary") == "summary 0 0 0 0 True"
    assert c.finish()[0] == 0


def test_worker_threads_all_stop_on_sigterm(child, make_queue) -> None:
    q = make_queue(capacity=64)
    c = child(
        """
        import jobring, sys
        q = jobring.Queue.open(sys.argv[1])
        jobring.Worker.install_signal_handlers()
        print("ready", flush=True)
        s = jobring.Worker(q, lambda job: print("job", job.id, flush=True), threads=4).run()
        print("summary", s.claimed, s.acked, s.stopped, flush=True)
        """,
        q.name,
    )
    c.expect("ready")
    for i in range(20):
        q.push(str(i))
    deadline = time.monotonic() + LONG_WAIT
    while q.stats()["acked"] < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    c.signal(signal.SIGTERM)
    assert c.expect("summary") == "summary 20 20 True"
    assert c.finish()[0] == 0
    assert jobring.Queue.open(q.name).stats()["acked"] == 20
