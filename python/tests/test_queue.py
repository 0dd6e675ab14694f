"""jobring.Queue and jobring.Job on real queues: the calls, their errors,
leases, the with-statement, waits that release the GIL and end on Ctrl-C."""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import threading
import time

import pytest
from pathlib import Path
from conftest import LONG_WAIT, PYTHON_DIR, REPO_ROOT

import jobring
from jobring import _capi


# --- the library and the package ---------------------------------------------
def test_versions_agree() -> None:
    """The package, its pyproject.toml, the CMake project and the loaded library say one version."""
    cmake = (REPO_ROOT / "CMakeLists.txt").read_text()
    m = re.search(r"project\(jobring VERSION (\d+\.\d+\.\d+)", cmake)
    assert m, "no project(jobring VERSION ...) in CMakeLists.txt"
    pyproject = (PYTHON_DIR / "pyproject.toml").read_text()
    p = re.search(r'^version = "([^"]+)"', pyproject, re.M)
    assert p, "no version in pyproject.toml"
    assert jobring.__version__ == m.group(1) == p.group(1)
    assert jobring.library_version() == jobring.__version__
    assert os.path.exists(jobring.library_path()) or jobring.library_path() == _capi.SONAME


@pytest.mark.skipif(not os.environ.get("JOBRING_CAPI_LAYOUT"), reason="JOBRING_CAPI_LAYOUT (a build's capi_layout) not set")
def test_struct_layouts_match_the_c_header() -> None:
    """Every ctypes struct has jobring.h's size and field offsets (printed by a C program built with the header)."""
    out = subprocess.run([os.environ["JOBRING_CAPI_LAYOUT"]], check=True, capture_output=True, text=True).stdout
    seen = 0
    for line in out.splitlines():
        what, value = line.split()
        struct, _, member = what.partition(".")
        cls = _capi.STRUCTS[struct]
        if member:
            assert getattr(cls, member).offset == int(value), what
        else:
            assert ctypes.sizeof(cls) == int(value), what
        seen += 1
    expected = sum(1 + len(cls._fields_) for cls in _capi.STRUCTS.values())
    assert seen == expected, "the C program and _capi.STRUCTS cover different fields"


def test_every_status_code_has_its_exception() -> None:
    for code in (2, 3, 4, *range(101, 115), 200, 201):
        e = jobring._errors.error_for(code, "message")
        assert type(e) is not jobring.Error and isinstance(e, jobring.Error) and e.code == code
    assert isinstance(jobring._errors.error_for(103, "m"), ValueError)
    assert isinstance(jobring._errors.error_for(104, "m"), LookupError)
    assert isinstance(jobring._errors.error_for(112, "m"), OSError)


# --- lifecycle ------------------------------------------------------------------
def test_create_open_remove_and_their_errors(queue_name: str) -> None:
    with pytest.raises(jobring.NotFound, match=queue_name):
        jobring.Queue.open(queue_name)
    q = jobring.Queue.create(queue_name, capacity=8, max_payload=64, lease=2.5, max_attempts=4)
    try:
        assert q.name == queue_name and not q.closed
        assert q.options == jobring.QueueOptions(
            capacity=8, max_payload=64, lease=2.5, max_attempts=4, mode=0o600, dedup_keys=16, dedup_window=300.0
        )
        assert q.incarnation != 0
        with pytest.raises(jobring.AlreadyExists):
            jobring.Queue.create(queue_name)
        with jobring.Queue.open(queue_name) as q2:
            assert q2.options == q.options and q2.incarnation == q.incarnation
        assert q2.closed
        with pytest.raises(jobring.Error, match="closed"):
            q2.push("x")
        q2.close()  # idempotent
        with pytest.raises(jobring.OptionsMismatch):
            jobring.Queue.open_or_create(queue_name, capacity=16)
        same = jobring.Queue.open_or_create(queue_name, capacity=8, max_payload=64, lease=2.5, max_attempts=4)
        assert same.incarnation == q.incarnation
        same.close()
    finally:
        q.close()
    assert jobring.Queue.remove(queue_name) is True
    assert jobring.Queue.remove(queue_name) is False


def test_invalid_names_and_options_are_value_errors(queue_name: str) -> None:
    with pytest.raises(jobring.InvalidName):
        jobring.Queue.create("no/slash")
    with pytest.raises(ValueError):
        jobring.Queue.create(".hidden")
    with pytest.raises(jobring.InvalidOptions):
        jobring.Queue.create(queue_name, capacity=0)
    with pytest.raises(jobring.InvalidArgument):
        jobring.Queue.create(queue_name, lease=0)
    with pytest.raises(jobring.InvalidArgument):
        jobring.Queue.create(queue_name, capacity=-1)
    with pytest.raises(TypeError):
        jobring.Queue.create(42)  # type: ignore[arg-type]


# --- push and claim -------------------------------------------------------------
def test_push_claim_ack_round_trip(make_queue) -> None:
    q = make_queue(capacity=8, max_payload=64)
    ids = [q.push(b"\x00binary\xff"), q.push("text: \u00e9\u4e2d"), q.push(b""), q.push(bytearray(b"ba"))]
    assert all(isinstance(i, jobring.JobId) and isinstance(i, int) and not i.duplicate for i in ids)
    assert len(set(ids)) == 4
    got = []
    while (job := q.claim()) is not None:
        assert job.attempt == 1 and job.key is None and job.queue is q
        assert re.fullmatch(r"\d+\.\d+\.[0-9a-f]+", job.lease)
        got.append((job.id, job.payload))
        q.ack(job)
    assert got == [
        (ids[0], b"\x00binary\xff"),
        (ids[1], "text: \u00e9\u4e2d".encode()),
        (ids[2], b""),
        (ids[3], b"ba"),
    ]
    s = q.stats()
    assert set(s) == set(_capi.STATS_FIELDS)
    assert (s["pushed"], s["claimed"], s["acked"], s["ready"], s["leased"]) == (4, 4, 4, 0, 0)


def test_text_decodes_utf8(make_queue) -> None:
    q = make_queue()
    q.push("h\u00e9llo")
    job = q.claim()
    assert job is not None and job.text == "h\u00e9llo"
    job.ack()


def test_keys_deduplicate(make_queue) -> None:
    q = make_queue()
    first = q.push("a", key="order-17")
    again = q.push("a again", key="order-17")
    other = q.push("b", key=b"order-18")
    assert not first.duplicate and again.duplicate and again == first and other != first
    job = q.claim()
    assert job is not None and job.key == "order-17" and job.payload == b"a"
    job.ack()
    assert q.push("a after ack", key="order-17").duplicate  # remembered for dedup_window
    with pytest.raises(jobring.InvalidArgument):
        q.push("x", key="k" * 65)


def test_delay_hides_a_job_and_wait_finds_it(make_queue) -> None:
    q = make_queue()
    q.push("later", delay=0.2)
    assert q.claim() is None
    assert q.stats()["delayed"] == 1
    job = q.claim(wait=LONG_WAIT)
    assert job is not None and job.payload == b"later"
    job.ack()


def test_full_queue_and_payload_too_large(make_queue) -> None:
    q = make_queue(capacity=2, max_payload=8)
    q.push("1")
    q.push("2")
    with pytest.raises(jobring.QueueFull):
        q.push("3")
    with pytest.raises(jobring.QueueFull):
        q.push("3", wait=0.05)
    with pytest.raises(jobring.PayloadTooLarge):
        q.push(b"123456789")
    with pytest.raises(ValueError):
        q.push(b"123456789")
    with pytest.raises(TypeError):
        q.push(17)  # type: ignore[arg-type]

    # A push that waits for ever gets room when a job is acked.
    pushed = []
    t = threading.Thread(target=lambda: pushed.append(q.push("3", wait=jobring.FOREVER)))
    t.start()
    time.sleep(0.05)
    job = q.claim()
    assert job is not None
    job.ack()
    t.join(LONG_WAIT)
    assert not t.is_alive() and len(pushed) == 1


def test_invalid_durations(make_queue) -> None:
    q = make_queue()
    with pytest.raises(jobring.InvalidArgument):
        q.push("x", delay=-1)
    with pytest.raises(jobring.InvalidArgument):
        q.push("x", wait=-1)
    with pytest.raises(jobring.InvalidArgument):
        q.push("x", delay=8 * 86400)
    with pytest.raises(jobring.InvalidArgument):
        q.claim(lease=0)
    with pytest.raises(TypeError):
        q.claim(wait="1")  # type: ignore[arg-type]
    import datetime

    q.push("x", delay=datetime.timedelta(milliseconds=1))
    assert q.claim(wait=datetime.timedelta(seconds=LONG_WAIT)) is not None


# --- leases ----------------------------------------------------------------------
def test_release_counts_attempts_and_dead_letters_with_the_note(make_queue) -> None:
    q = make_queue(max_attempts=2)
    q.push("poison")
    job = q.claim()
    assert job is not None and job.attempt == 1
    q.release(job, delay=0, error="first failure")
    job = q.claim()
    assert job is not None and job.attempt == 2
    job.release(error="bad input: \u00e9" + "x" * 200)  # the library cuts it to 112 bytes
    assert q.claim() is None
    dead = q.peek("dead")
    assert len(dead) == 1
    d = dead[0]
    assert d.state == "dead" and d.attempts == 2 and d.payload == b"poison" and d.text == "poison"
    assert d.error.startswith("bad input: \u00e9") and len(d.error.encode()) <= 112
    assert d.failed_ago is not None and d.failed_ago >= 0
    assert q.stats()["dead_lettered"] == 1
    assert q.requeue(d.id) is True and q.requeue(d.id) is False
    job = q.claim()
    assert job is not None and job.attempt == 1
    job.release()
    job = q.claim()
    assert job is not None
    job.release()  # dead again
    assert q.remove_dead(job.id) is True and q.remove_dead(job.id) is False


def test_move_dead_to_a_dead_letter_queue_and_back(make_queue) -> None:
    q = make_queue(capacity=4, max_attempts=1)
    dlq = make_queue(capacity=1)
    for text in ("a", "b"):
        q.push(text)
        job = q.claim()
        assert job is not None
        job.release(error="poison " + text)
    r = q.move_dead(dlq)
    assert r == jobring.MoveResult(moved=1, too_large=0, left=0, target_full=True)
    (d,) = dlq.peek("dead")
    assert d.error == "poison " + d.text and d.attempts == 1
    assert q.stats()["moved_out"] == 1 and dlq.stats()["moved_in"] == 1
    assert dlq.move_dead(q, ready=True).moved == 1
    job = q.claim()
    assert job is not None and job.attempt == 1 and job.text == d.text
    job.ack()
    assert q.move_dead(dlq, limit=1).moved == 1
    assert q.stats()["dead"] == 0
    with pytest.raises(jobring.InvalidArgument):
        q.move_dead(q)
    with pytest.raises(jobring.InvalidArgument):
        q.move_dead(dlq, limit=0)


def test_pause_and_resume(make_queue) -> None:
    q = make_queue()
    q.push("a")
    assert q.pause() is True and q.pause() is False and q.paused
    assert q.claim() is None
    assert q.claim(wait=0.05) is None
    q.push("b")
    assert q.stats()["paused"] == 1 and q.stats()["ready"] == 2
    assert q.resume() is True and q.resume() is False and not q.paused
    job = q.claim()
    assert job is not None and job.text == "a"


def test_a_file_backed_queue_by_dir_and_by_path(tmp_path: Path) -> None:
    """dir= makes a file-backed queue named DIR/NAME (README, "Queues that survive a reboot"); sync= is kept."""
    q = jobring.Queue.create("orders", dir=str(tmp_path), sync="always", capacity=8)
    try:
        assert q.name == f"{tmp_path}/orders"
        assert (tmp_path / "jobring.orders").exists()
        assert q.options.sync == "always"
        q.push(b"survives")
        q.close()
        again = jobring.Queue.open(f"{tmp_path}/orders")
        with again.claim() as job:
            assert job.payload == b"survives"
        assert again.stats()["recoveries"] == 0
        again.close()
        with pytest.raises(jobring.InvalidOptions):
            jobring.Queue.create("in-memory", sync="always")
        with pytest.raises(jobring.InvalidArgument):
            jobring.Queue.create("x", dir=str(tmp_path), sync="sometimes")
    finally:
        jobring.Queue.remove(f"{tmp_path}/orders")


def test_claim_any_takes_the_first_queue_with_a_job(make_queue) -> None:
    urgent, bulk = make_queue(), make_queue()
    assert jobring.claim_any([urgent, bulk]) is None
    bulk.push("b")
    urgent.push("u")
    job = jobring.claim_any([urgent, bulk], wait=1.0)
    assert job is not None and job.queue is urgent and job.text == "u"
    job.ack()
    job = jobring.claim_any([urgent, bulk])
    assert job is not None and job.queue is bulk
    job.ack()
    assert jobring.claim_any([urgent, bulk], wait=0.05) is None
    with pytest.raises(jobring.InvalidArgument):
        jobring.claim_any([])


def test_release_with_delay(make_queue) -> None:
    q = make_queue()
    q.push("retry me")
    job = q.claim()
    assert job is not None
    q.release(job, delay=0.2)
    assert q.claim() is None and q.stats()["delayed"] == 1
    again = q.claim(wait=LONG_WAIT)
    assert again is not None and again.id == job.id and again.attempt == 2
    again.ack()


def test_a_lapsed_lease_is_taken_over_and_the_old_one_is_lost(make_queue) -> None:
    q = make_queue()
    q.push("slow")
    first = q.claim(lease=0.05)
    assert first is not None
    second = q.claim(lease=LONG_WAIT, wait=LONG_WAIT)  # once the first lease runs out
    assert second is not None and second.id == first.id and second.attempt == 2
    with pytest.raises(jobring.LeaseLost):
        q.ack(first)
    with pytest.raises(jobring.LeaseLost):
        q.extend(first, 1.0)
    q.ack(second)
    with pytest.raises(jobring.LeaseLost):
        q.ack(second)  # acked already
    assert q.stats()["expired_total"] == 1


def test_extend_keeps_the_job_and_changes_the_token(make_queue) -> None:
    q = make_queue()
    q.push("long")
    job = q.claim(lease=0.5)
    assert job is not None
    before, deadline = job.lease, job.deadline
    q.extend(job, LONG_WAIT)
    assert job.lease != before and job.deadline > deadline
    time.sleep(0.6)  # past the first lease
    assert q.claim() is None
    job.ack()


def test_give_back_does_not_count_the_attempt(make_queue) -> None:
    q = make_queue()
    q.push("untouched")
    job = q.claim()
    assert job is not None
    q.give_back(job)
    again = q.claim()
    assert again is not None and again.attempt == 1
    again.ack()


# --- with ------------------------------------------------------------------------
def test_with_acks_on_success(make_queue) -> None:
    q = make_queue()
    q.push("ok")
    with q.claim() as job:
        assert job.payload == b"ok"
    assert q.stats()["acked"] == 1


def test_with_releases_on_an_exception_with_backoff_and_note(make_queue) -> None:
    q = make_queue(max_attempts=1)
    q.push("fails")
    with pytest.raises(RuntimeError):
        with q.claim() as job:
            raise RuntimeError("disk full")
    assert job._finished
    dead = q.peek("dead")  # its only attempt: dead, with the exception as the note
    assert [d.error for d in dead] == ["RuntimeError: disk full"]

    q2 = make_queue()
    q2.push("fails")
    with pytest.raises(ValueError):
        with q2.claim() as job:
            raise ValueError()
    s = q2.stats()
    assert s["released"] == 1 and s["delayed"] == 1  # the default backoff: 0.5 .. 1 s
    info = q2.peek("delayed")[0]
    assert 0.0 <= info.until <= 1.0


def test_with_releases_at_once_on_keyboard_interrupt(make_queue) -> None:
    q = make_queue()
    q.push("interrupted")
    with pytest.raises(KeyboardInterrupt):
        with q.claim() as job:
            raise KeyboardInterrupt
    again = q.claim()
    assert again is not None and again.id == job.id and again.attempt == 2
    again.ack()


def test_with_leaves_a_job_the_block_ended(make_queue) -> None:
    q = make_queue()
    q.push("a")
    q.push("b")
    with q.claim() as job:
        job.ack()
    with q.claim() as job:
        job.release(delay=0)
    assert q.stats()["acked"] == 1 and q.stats()["released"] == 1


def test_with_on_a_lost_lease_raises_lease_lost(make_queue) -> None:
    q = make_queue()
    q.push("a")
    with pytest.raises(jobring.LeaseLost):
        with q.claim(lease=0.05) as job:
            other = q.claim(wait=LONG_WAIT)
            assert other is not None and other.id == job.id
    other.ack()


# --- operators -------------------------------------------------------------------
def test_peek_and_purge(make_queue) -> None:
    q = make_queue(capacity=8, max_payload=64)
    for i in range(3):
        q.push(f"job {i}" * 3)
    q.push("delayed", delay=60)
    ready = q.peek("ready", payload_bytes=5)
    assert [r.payload for r in ready] == [b"job 0", b"job 1", b"job 2"]
    assert all(r.payload_length == 15 and r.attempts == 0 for r in ready)
    assert len(q.peek("delayed")) == 1 and q.peek("delayed")[0].until > 0
    job = q.claim()
    assert job is not None
    leased = q.peek("leased")
    assert [j.id for j in leased] == [job.id] and leased[0].owner_pid == os.getpid()
    with pytest.raises(jobring.InvalidArgument):
        q.peek("bogus")
    assert q.purge("ready") == 2
    assert q.purge() == 1  # all: the delayed one (never the leased)
    job.ack()
    assert q.requeue_dead() == 0


# --- waits: threads, the GIL, interrupts, Ctrl-C --------------------------------
def test_a_blocking_claim_releases_the_gil(make_queue) -> None:
    """A thread waits in claim(); the main thread can still run and push the job
    it then gets (if the claim held the GIL, the push could not happen)."""
    q = make_queue()
    got = []
    t = threading.Thread(target=lambda: got.append(q.claim(wait=LONG_WAIT)))
    t.start()
    time.sleep(0.1)
    q.push("wake up")
    t.join(LONG_WAIT)
    assert not t.is_alive()
    assert got and got[0] is not None and got[0].payload == b"wake up"
    got[0].ack()


def test_many_threads_claim_every_job_once(make_queue) -> None:
    q = make_queue(capacity=256)
    n = 200
    for i in range(n):
        q.push(str(i))
    seen = []
    lock = threading.Lock()

    def work() -> None:
        while (job := q.claim(wait=0.2)) is not None:
            with lock:
                seen.append(int(job.text))
            job.ack()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(LONG_WAIT)
    assert sorted(seen) == list(range(n))


def test_interrupt_waits_ends_waits_until_cleared(make_queue) -> None:
    q = make_queue()
    errors = []

    def wait() -> None:
        try:
            q.claim(wait=jobring.FOREVER)
        except jobring.Interrupted as e:
            errors.append(e)

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.1)
    try:
        jobring.interrupt_waits()
        t.join(LONG_WAIT)
        assert not t.is_alive() and len(errors) == 1
        with pytest.raises(jobring.Interrupted):
            q.claim(wait=1.0)  # still interrupted
    finally:
        jobring.clear_interrupt()
    assert q.claim(wait=0.01) is None


@pytest.mark.parametrize("call", ["claim", "push"])
def test_ctrl_c_interrupts_a_wait_on_the_main_thread(child, queue_name: str, call: str) -> None:
    c = child(
        f"""
        import jobring
        q = jobring.Queue.create({queue_name!r}, capacity=1)
        if {call!r} == "push":
            q.push("fill")
        try:
            print("waiting", flush=True)
            if {call!r} == "push":
                q.push("more", wait=jobring.FOREVER)
            else:
                q.claim(wait=jobring.FOREVER)
        except KeyboardInterrupt:
            print("KeyboardInterrupt", flush=True)
        """
    )
    c.expect("waiting")
    time.sleep(0.2)
    c.signal(signal.SIGINT)
    c.expect("KeyboardInterrupt")
    status, _, err = c.finish()
    assert status == 0, err


def test_a_job_is_redelivered_after_its_claimer_is_killed(child, make_queue) -> None:
    q = make_queue(lease=0.5)
    job_id = q.push("survives")
    c = child(
        f"""
        import jobring, time
        q = jobring.Queue.open({q.name!r})
        job = q.claim()
        print("claimed", job.id, flush=True)
        time.sleep(3600)
        """
    )
    assert c.expect("claimed") == f"claimed {job_id}"
    c.proc.kill()
    c.finish()
    again = q.claim(wait=LONG_WAIT)  # when the lease runs out (at once with jobring-janitor)
    assert again is not None and again.id == job_id and again.attempt == 2
    again.ack()


def test_library_not_found_says_what_to_do(tmp_path) -> None:
    env = dict(os.environ, JOBRING_LIBRARY=str(tmp_path / "nothing.so"))
    r = subprocess.run(
        [os.sys.executable, "-c", "import jobring; jobring.Queue.open('x')"],
        env=dict(env, PYTHONPATH=str(PYTHON_DIR)),
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0
    assert "LibraryNotFound" in r.stderr and "JOBRING_LIBRARY" in r.stderr
    # Importing works without the library: it is loaded on first use.
    r = subprocess.run(
        [os.sys.executable, "-c", "import jobring; print(jobring.Backoff().base)"],
        env=dict(env, PYTHONPATH=str(PYTHON_DIR)),
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0 and r.stdout.strip() == "1.0", r.stderr


def test_the_library_is_found_by_the_loader_and_in_the_package_folder(tmp_path) -> None:
    """Without $JOBRING_LIBRARY: through LD_LIBRARY_PATH (as after an install
    and ldconfig), and in the package's own folder."""
    import shutil

    built = jobring.library_path()
    if not os.path.isabs(built):
        pytest.skip("the library was found by the loader already")
    env = {k: v for k, v in os.environ.items() if k != "JOBRING_LIBRARY"}
    code = "import jobring; print(jobring.library_path(), jobring.library_version())"
    r = subprocess.run(
        [os.sys.executable, "-c", code],
        env=dict(env, PYTHONPATH=str(PYTHON_DIR), LD_LIBRARY_PATH=os.path.dirname(built)),
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [_capi.SONAME, jobring.__version__]

    pkg = tmp_path / "jobring"
    shutil.copytree(PYTHON_DIR / "jobring", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(built, pkg / _capi.SONAME)
    r = subprocess.run(
        [os.sys.executable, "-c", code], env=dict(env, PYTHONPATH=str(tmp_path)), capture_output=True, text=True,
        cwd=tmp_path,  # not the source folder, whose jobring/ would come first
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [str(pkg / _capi.SONAME), jobring.__version__]
