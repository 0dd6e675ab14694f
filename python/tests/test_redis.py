"""The package on jobring's Redis backend: Queue.create/open/remove with
``url=`` give a queue on a Redis 7 server, and everything else — claims,
leases, fencing, dead jobs, the Worker — works on it as on shared memory.
Each test module starts its own redis-server on a unix socket (never a
system Redis); without redis-server the tests skip, saying so."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator, List

import pytest

import jobring

REDIS_SERVER = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if REDIS_SERVER is None:
        pytest.skip("no redis-server (apt-get install redis-server)")
    d: Path = tmp_path_factory.mktemp("redis")
    sock = d / "redis.sock"
    proc = subprocess.Popen(
        [REDIS_SERVER, "--port", "0", "--unixsocket", str(sock), "--save", "", "--appendonly", "no", "--dir", str(d)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        url = f"redis+unix://{sock}"
        while True:
            try:
                jobring.Queue.remove("probe", url=url)
                break
            except jobring.NotSupported:
                pytest.skip("this libjobring was built without the Redis backend")
            except jobring.Unavailable:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def rq(redis_url: str, queue_name: str) -> Iterator[jobring.Queue]:
    q = jobring.Queue.create(queue_name, capacity=64, max_attempts=2, url=redis_url)
    yield q
    q.close()
    jobring.Queue.remove(queue_name, url=redis_url)


def test_a_queue_on_a_url(rq: jobring.Queue, redis_url: str, queue_name: str) -> None:
    assert rq.remote
    assert rq.name == queue_name
    assert rq.options.capacity == 64
    job_id = rq.push("hello")
    with pytest.raises(jobring.AlreadyExists):
        jobring.Queue.create(queue_name, url=redis_url)
    other = jobring.Queue.open(queue_name, url=redis_url)
    job = other.claim()
    assert job is not None and job.id == job_id and job.text == "hello" and job.attempt == 1
    stale = job.lease
    job.release()
    again = rq.claim()
    assert again is not None and again.attempt == 2
    # The first holder's lease is stale: its ack changes nothing.
    with pytest.raises(jobring.LeaseLost):
        job.ack()
    again.release(error="broken")  # the second of max_attempts=2: dead
    assert rq.stats()["dead"] == 1
    dead = rq.peek("dead")
    assert [d.id for d in dead] == [job_id]
    assert rq.requeue(job_id)
    with rq.claim() as j:  # acked when the block ends
        assert j is not None and j.text == "hello"
    assert rq.claim() is None
    assert stale  # (a lease is printable text)
    other.close()


def test_pause_and_a_blocking_claim(rq: jobring.Queue) -> None:
    assert rq.pause()
    rq.push("x")
    assert rq.paused
    assert rq.claim() is None
    assert rq.resume()
    job = rq.claim(wait=5.0)
    assert job is not None
    job.ack()


def test_the_worker_on_redis(rq: jobring.Queue) -> None:
    for i in range(5):
        rq.push(f"job {i}")
    seen = []

    def handle(job: jobring.Job) -> None:
        seen.append(job.text)

    summary = jobring.Worker(rq, handle, max_jobs=5).run()
    assert summary.acked == 5
    assert sorted(seen) == [f"job {i}" for i in range(5)]
    assert rq.stats()["ready"] == 0


def test_move_dead_between_redis_queues(rq: jobring.Queue, redis_url: str, queue_name: str) -> None:
    other = jobring.Queue.create(queue_name + ".to", url=redis_url)
    local = jobring.Queue.create(queue_name + ".local")
    try:
        rq.push("poison")
        for _ in range(2):  # max_attempts=2
            job = rq.claim()
            assert job is not None
            job.release(error="broken")
        assert rq.stats()["dead"] == 1
        assert rq.move_dead(other).moved == 1
        assert rq.stats()["dead"] == 0
        assert [d.error for d in other.peek("dead")] == ["broken"]
        assert other.move_dead(rq, ready=True).moved == 1
        assert rq.stats()["ready"] == 1
        with pytest.raises(jobring.NotSupported):  # across backends
            rq.move_dead(local)
    finally:
        local.close()
        jobring.Queue.remove(queue_name + ".local")
        other.close()
        jobring.Queue.remove(queue_name + ".to", url=redis_url)


def test_url_from_env_and_bad_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBRING_URL", raising=False)
    assert jobring.url_from_env() == "shm:"
    monkeypatch.setenv("JOBRING_URL", "redis://127.0.0.1:6390")
    assert jobring.url_from_env() == "redis://127.0.0.1:6390"
    with pytest.raises(jobring.InvalidArgument):
        jobring.Queue.open("q", url="amqp://x")


def _start_server(d: Path) -> "subprocess.Popen[bytes]":
    """A redis-server on d/redis.sock that writes every change to its AOF
    (so that a restart finds the queue), ready when this returns."""
    assert REDIS_SERVER is not None
    sock = d / "redis.sock"
    proc = subprocess.Popen(
        [REDIS_SERVER, "--port", "0", "--unixsocket", str(sock), "--save", "", "--appendonly", "yes",
         "--appendfsync", "always", "--dir", str(d)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while True:
        try:
            jobring.Queue.remove("probe", url=f"redis+unix://{sock}")
            return proc
        except jobring.Unavailable:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.05)


def test_the_worker_rides_out_a_server_outage(redis_url: str, tmp_path: Path) -> None:
    """The server dies before the Worker starts: its claims fail, are
    reported and tried again with backoff (never raised out of run(), never
    a busy loop); once the server is back, every job is done."""
    server = _start_server(tmp_path)
    url = f"redis+unix://{tmp_path}/redis.sock"
    try:
        q = jobring.Queue.create("outage", url=url)
        for i in range(3):
            q.push(f"job {i}")
        server.kill()
        server.wait()
        errors: List[jobring.BackendError] = []
        done: List[str] = []
        worker = jobring.Worker(
            q,
            lambda job: done.append(job.text),
            max_jobs=3,
            backend_retry=jobring.Backoff(base=0.02, cap=0.2),
            on_backend_error=errors.append,
        )
        result: List[jobring.WorkerSummary] = []
        t = threading.Thread(target=lambda: result.append(worker.run()))
        t.start()
        deadline = time.monotonic() + 30
        while len(errors) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(errors) >= 3
        assert all(e.operation == "claim" and isinstance(e.error, jobring.Unavailable) for e in errors)
        assert all(0 < e.retry_in <= 0.2 for e in errors)
        server = _start_server(tmp_path)
        t.join(60)
        assert not t.is_alive()
        summary = result[0]
        assert summary.acked == 3 and sorted(done) == ["job 0", "job 1", "job 2"]
        assert summary.backend_errors == len([e for e in errors if e.operation == "claim"]) >= 3
        assert q.stats()["ready"] == 0
        q.close()
    finally:
        server.kill()
        server.wait()


def test_a_down_server_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(jobring.Unavailable):
        jobring.Queue.open("q", url=f"redis+unix://{tmp_path}/nobody.sock")
