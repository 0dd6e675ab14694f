"""jobring.Worker in this process: the backoff formula (the C++ one, value
for value), acks, retries, dead-lettering with the note, outcomes,
heartbeat extension, grace, stop_now, max_jobs, idle_exit, hooks."""

from __future__ import annotations

import threading
import time
from typing import List

import pytest
from conftest import LONG_WAIT, wait_until

import jobring
from jobring import Backoff, Outcome
from jobring._backoff import backoff_delay_ms


def run_in_thread(worker: jobring.Worker) -> "tuple[threading.Thread, List[jobring.WorkerSummary]]":
    out: List[jobring.WorkerSummary] = []
    t = threading.Thread(target=lambda: out.append(worker.run()))
    t.start()
    return t, out


def join(t: threading.Thread, out: list) -> jobring.WorkerSummary:
    t.join(LONG_WAIT)
    assert not t.is_alive(), "the Worker did not return"
    return out[0]


# --- backoff ----------------------------------------------------------------
def test_backoff_formula_is_the_cpp_one() -> None:
    """tests/runtime/test_worker.cpp's Backoff.FormulaDoublesCapsAndJitters, value for value."""
    none = Backoff(0.1, 1.0, "none")
    for attempt, ms in [(0, 100), (1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (6, 1000), (64, 1000), (4_000_000_000, 1000)]:
        assert backoff_delay_ms(none, attempt, 12345) == ms, attempt
    assert backoff_delay_ms(Backoff(0, 0.01, "none"), 5, 1) == 0
    week = 604800
    assert backoff_delay_ms(Backoff(week, week, "none"), 40, 7) == week * 1000
    full = Backoff(0.1, 1.0, "full")
    equal = Backoff(0.1, 1.0, "equal")
    assert backoff_delay_ms(full, 3, 0) == 0
    assert backoff_delay_ms(full, 3, 400) == 400
    assert backoff_delay_ms(equal, 3, 0) == 200
    assert backoff_delay_ms(equal, 3, 200) == 400
    r = 88172645463325252
    mask = (1 << 64) - 1
    seen = set()
    for _ in range(2000):
        r ^= (r << 13) & mask
        r ^= r >> 7
        r ^= (r << 17) & mask
        f = backoff_delay_ms(full, 4, r)
        e = backoff_delay_ms(equal, 4, r)
        assert 0 <= f <= 800 and 400 <= e <= 800
        seen.add(f // 100)
    assert len(seen) == 9  # every tenth of [0, 800] is hit
    assert 0.5 <= jobring.backoff_delay(Backoff(), 1) <= 1.0
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)
    with pytest.raises(ValueError):
        Backoff(jitter="some")


# --- what a handler returns ------------------------------------------------------
def test_every_job_is_handled_once_by_several_threads(make_queue) -> None:
    q = make_queue(capacity=256)
    n = 100
    for i in range(n):
        q.push(str(i))
    seen: List[int] = []
    lock = threading.Lock()
    thread_indexes = set()

    def handle(job: jobring.Job, ctx: jobring.JobContext) -> None:
        with lock:
            seen.append(int(job.text))
            thread_indexes.add(ctx.thread_index)

    s = jobring.Worker(q, handle, threads=4, idle_exit=0.3).run()
    assert sorted(seen) == list(range(n))
    assert (s.claimed, s.acked, s.retried, s.errors, s.stopped) == (n, n, 0, 0, False)
    assert thread_indexes <= {0, 1, 2, 3}
    st = q.stats()
    assert st["acked"] == n and st["expired_total"] == 0


def test_an_exception_retries_with_backoff_and_reports_it(make_queue) -> None:
    q = make_queue()
    q.push("flaky")
    attempts: List[int] = []
    errors: List[BaseException] = []
    reports: List[jobring.JobReport] = []

    def handle(job: jobring.Job) -> None:
        attempts.append(job.attempt)
        if job.attempt == 1:
            raise ConnectionError("SMTP server busy")

    s = jobring.Worker(
        q, handle, backoff=Backoff(0.01, 0.05), idle_exit=0.5,
        on_error=lambda job, e: errors.append(e), on_done=lambda job, r: reports.append(r),
    ).run()  # fmt: skip
    assert attempts == [1, 2]
    assert [type(e) for e in errors] == [ConnectionError]
    assert [r.result for r in reports] == [jobring.RETRIED, jobring.ACKED]
    assert 0.005 <= reports[0].delay <= 0.01 and reports[0].error is errors[0]
    assert reports[0].outcome == Outcome.retry("ConnectionError: SMTP server busy")
    assert (s.retried, s.acked, s.errors) == (1, 1, 1)


def test_an_unreported_exception_is_logged_with_its_traceback(make_queue, caplog) -> None:
    q = make_queue(max_attempts=1)
    q.push("x")

    def handle(job: jobring.Job) -> None:
        raise KeyError("missing")

    with caplog.at_level("ERROR", logger="jobring"):
        jobring.Worker(q, handle, max_jobs=1).run()
    assert any("job 1 (attempt 1) failed: KeyError: 'missing'" in r.getMessage() and r.exc_info for r in caplog.records)


def test_the_last_attempt_dead_letters_with_the_exception_as_note(make_queue) -> None:
    q = make_queue(max_attempts=2)
    q.push("poison")
    last: List[bool] = []

    def handle(job: jobring.Job, ctx: jobring.JobContext) -> None:
        last.append(ctx.last_attempt)
        raise ValueError(f"bad input on attempt {job.attempt}")

    s = jobring.Worker(q, handle, backoff=Backoff(0, 0), idle_exit=0.3, on_error=lambda j, e: None).run()
    assert last == [False, True]
    assert (s.retried, s.dead, s.errors) == (1, 1, 2)
    dead = q.peek("dead")
    assert [d.error for d in dead] == ["ValueError: bad input on attempt 2"]


def test_outcomes(make_queue) -> None:
    q = make_queue()
    for text in ("ack", "none", "skip", "drop", "after", "reason", "bad"):
        q.push(text)
    seen: List[str] = []

    def handle(job: jobring.Job):
        seen.append(f"{job.text}{job.attempt}")
        if job.attempt > 1:
            return None
        return {
            "ack": Outcome.ack(),
            "none": None,
            "skip": Outcome.skip(),
            "drop": Outcome.drop(),
            "after": Outcome.retry_after(0.01),
            "reason": Outcome.retry("try later"),
            "bad": 42,  # not an Outcome: a TypeError, retried
        }[job.text]

    s = jobring.Worker(q, handle, backoff=Backoff(0, 0), idle_exit=0.5, on_error=lambda j, e: None).run()
    assert (s.acked, s.skipped, s.dropped, s.retried, s.errors) == (5, 1, 1, 3, 1)
    assert sorted(seen) == sorted(["ack1", "none1", "skip1", "drop1", "after1", "after2", "reason1", "reason2", "bad1", "bad2"])
    assert q.stats()["ready"] == 0


def test_a_handler_may_not_end_a_workers_job_itself(make_queue) -> None:
    q = make_queue(max_attempts=1)
    q.push("a")
    errors: List[BaseException] = []

    def handle(job: jobring.Job) -> None:
        with pytest.raises(jobring.Error, match="Worker"):
            q.ack(job)
        with pytest.raises(jobring.Error, match="Worker"):
            with job:
                pass
        errors.append(None)  # type: ignore[arg-type]

    s = jobring.Worker(q, handle, max_jobs=1).run()
    assert s.acked == 1 and len(errors) == 1


# --- leases ------------------------------------------------------------------------
def test_the_heartbeat_keeps_a_long_job_leased(make_queue) -> None:
    """A handler three times longer than its lease: extended every third of
    it, never taken over, acked at the end."""
    q = make_queue(lease=0.6)  # extended every 0.2 s; a stall of 0.4 s would lose it
    q.push("long")
    leases: List[str] = []

    def handle(job: jobring.Job, ctx: jobring.JobContext) -> None:
        deadline = ctx.deadline
        for _ in range(10):
            leases.append(ctx.lease)
            time.sleep(0.2)
            assert not ctx.cancelled
        assert ctx.deadline > deadline

    s = jobring.Worker(q, handle, max_jobs=1).run()
    assert s.acked == 1 and s.lease_lost == 0
    assert len(set(leases)) >= 3  # the token changed at each extension
    st = q.stats()
    assert st["expired_total"] == 0 and st["acked"] == 1


def test_extend_fraction_and_lease_are_checked(make_queue) -> None:
    q = make_queue()
    h = lambda job: None  # noqa: E731
    for bad in (dict(extend_fraction=1.0), dict(extend_fraction=0), dict(threads=0), dict(threads=1025),
                dict(lease=0), dict(lease=8 * 86400), dict(grace=-1), dict(idle_exit=-1), dict(max_jobs=-1)):
        with pytest.raises(jobring.InvalidArgument):
            jobring.Worker(q, h, **bad)  # type: ignore[arg-type]
    with pytest.raises(jobring.InvalidArgument):
        jobring.Worker(q, "not callable")  # type: ignore[arg-type]
    w = jobring.Worker(q, h, idle_exit=0.01)
    w.run()
    with pytest.raises(jobring.Error, match="twice"):
        w.run()


# --- stopping ----------------------------------------------------------------------
def test_request_stop_lets_the_job_in_hand_finish(make_queue) -> None:
    q = make_queue()
    q.push("a")
    q.push("b")
    started = threading.Event()
    results: List[object] = []

    def handle(job: jobring.Job, ctx: jobring.JobContext) -> None:
        started.set()
        results.append(ctx.sleep(LONG_WAIT))  # returns early at the stop
        results.append(ctx.stopping)

    w = jobring.Worker(q, handle, grace=LONG_WAIT)
    t, out = run_in_thread(w)
    assert started.wait(LONG_WAIT)
    w.request_stop()
    s = join(t, out)
    assert results == [False, True]
    assert (s.claimed, s.acked, s.stopped) == (1, 1, True)
    assert q.stats()["ready"] == 1  # the second job was not claimed


def test_the_grace_period_runs_out_and_the_job_is_released(make_queue) -> None:
    q = make_queue()
    q.push("stubborn")
    started = threading.Event()
    finish = threading.Event()
    seen: List[bool] = []
    abandoned: List[int] = []

    def handle(job: jobring.Job, ctx: jobring.JobContext) -> None:
        started.set()
        finish.wait(LONG_WAIT)  # ignores the stop
        seen.append(ctx.abandoned)

    w = jobring.Worker(q, handle, grace=0.05, on_abandon=lambda job: abandoned.append(job.id))
    t, out = run_in_thread(w)
    assert started.wait(LONG_WAIT)
    w.request_stop()
    wait_until(lambda: bool(abandoned), what="on_abandon")
    again = q.claim()  # released with no delay, its attempt counted
    assert again is not None and again.attempt == 2
    again.ack()
    finish.set()
    s = join(t, out)
    assert seen == [True]
    assert (s.abandoned, s.acked, s.stopped) == (1, 0, True)


def test_stop_now_releases_at_once(make_queue) -> None:
    q = make_queue()
    q.push("x")
    started = threading.Event()
    finish = threading.Event()

    def handle(job: jobring.Job) -> None:
        started.set()
        finish.wait(LONG_WAIT)

    w = jobring.Worker(q, handle, grace=LONG_WAIT)
    t, out = run_in_thread(w)
    assert started.wait(LONG_WAIT)
    w.stop_now()
    again = q.claim(wait=LONG_WAIT)
    assert again is not None and again.attempt == 2
    again.ack()
    finish.set()
    assert join(t, out).abandoned == 1


def test_interrupt_waits_stops_every_worker(make_queue) -> None:
    q = make_queue()
    w1 = jobring.Worker(q, lambda job: None)
    w2 = jobring.Worker(q, lambda job: None, threads=2)
    (t1, o1), (t2, o2) = run_in_thread(w1), run_in_thread(w2)
    time.sleep(0.1)
    try:
        jobring.interrupt_waits()
        assert join(t1, o1).stopped and join(t2, o2).stopped
    finally:
        jobring.clear_interrupt()


def test_request_stop_stops_this_worker_only(make_queue) -> None:
    q = make_queue()
    w1 = jobring.Worker(q, lambda job: None)
    w2 = jobring.Worker(q, lambda job: None)
    (t1, o1), (t2, o2) = run_in_thread(w1), run_in_thread(w2)
    time.sleep(0.1)
    w1.request_stop()
    assert join(t1, o1).stopped
    q.push("for w2")
    wait_until(lambda: q.stats()["acked"] == 1, what="w2 to ack")
    assert t2.is_alive()
    w2.request_stop()
    assert join(t2, o2).acked == 1


def test_max_jobs_and_idle_exit(make_queue) -> None:
    q = make_queue()
    for i in range(5):
        q.push(str(i))
    s = jobring.Worker(q, lambda job: None, max_jobs=3).run()
    assert (s.claimed, s.stopped) == (3, False)
    s = jobring.Worker(q, lambda job: None, idle_exit=0.2, threads=2).run()
    assert s.claimed == 2


def test_hooks_see_each_job(make_queue) -> None:
    q = make_queue()
    q.push("a")
    events: List[str] = []
    s = jobring.Worker(
        q,
        lambda job: events.append("handler"),
        max_jobs=1,
        on_claim=lambda job: events.append(f"claim {job.text}"),
        on_done=lambda job, r: events.append(f"done {r.result}"),
    ).run()
    assert events == ["claim a", "handler", "done acked"] and s.acked == 1


def test_a_failing_hook_is_ignored(make_queue) -> None:
    q = make_queue()
    q.push("a")

    def bad_hook(*args: object) -> None:
        raise RuntimeError("hook bug")

    s = jobring.Worker(q, lambda job: None, max_jobs=1, on_claim=bad_hook, on_done=bad_hook).run()
    assert s.acked == 1


# --- several queues (issue 19) ------------------------------------------------
def test_several_queues_strict_order_and_each_job_ends_in_its_queue(make_queue) -> None:
    urgent, bulk = make_queue(capacity=16), make_queue(capacity=16, max_attempts=1)
    for i in range(3):
        bulk.push(f"b{i}")
        urgent.push(f"u{i}")
    seen: List[str] = []

    def handler(job: jobring.Job, ctx: jobring.JobContext) -> Outcome:
        assert ctx.queue is job.queue
        seen.append(job.text[0])
        return Outcome.ack() if job.queue is urgent else Outcome.retry("no")

    s = jobring.Worker([urgent, bulk], handler, max_jobs=6).run()
    assert "".join(seen) == "uuubbb"
    assert s.acked == 3 and s.dead == 3
    assert bulk.stats()["dead"] == 3 and urgent.stats()["dead"] == 0


def test_several_queues_weighted_split(make_queue) -> None:
    a, b = make_queue(capacity=512), make_queue(capacity=512)
    for i in range(400):
        a.push("a")
        b.push("b")
    counts = {"a": 0, "b": 0}

    def handler(job: jobring.Job) -> None:
        counts[job.text] += 1

    jobring.Worker([a, b], handler, weights=[3, 1], max_jobs=400, seed=99).run()
    assert 240 <= counts["a"] <= 360 and counts["b"] >= 40  # expected 300 / 100
    with pytest.raises(jobring.InvalidArgument):
        jobring.Worker([a, b], handler, weights=[1])
    with pytest.raises(jobring.InvalidArgument):
        jobring.Worker([a, a], handler)
