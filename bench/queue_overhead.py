"""Queue overhead, side by side in one run: a raw Celery no-op task vs a ReasonFleet no-op job
through the whole path (row, message, claim, state writes), and the time to submit a 10,000-job sweep.

    PYTHONPATH=. python bench/queue_overhead.py [--round-trips 50] [--jobs 10000]

Needs Postgres and Redis (REASONFLEET_TEST_PG_ADMIN_URL / REASONFLEET_TEST_REDIS_URL, default the
local ones): it creates a scratch database and claims a free Redis database number, and removes both.
Targets: ReasonFleet round trip <= 3x raw Celery; 10k-job submit < 10 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PG_ADMIN_URL = os.environ.get("REASONFLEET_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_BASE_URL = os.environ.get("REASONFLEET_TEST_REDIS_URL", "redis://127.0.0.1:6379")

RAW_EXTRA = os.environ.get("BENCH_RAW_EXTRA", "").split()
RAW_APP = '''
import time, redis
from celery import Celery
app = Celery("raw", broker="{broker}")
app.conf.update(task_serializer="json", accept_content=["json"], task_ignore_result=True, worker_prefetch_multiplier=1,
                task_acks_late=True, worker_hijack_root_logger=False)
done = redis.Redis.from_url("{broker}")

@app.task(name="bench.noop")
def noop(key):
    done.set(key, repr(time.time()))
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round-trips", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=10_000)
    args = parser.parse_args()
    with scratch_services() as (db_url, broker_url):
        raw, ours = round_trips(db_url, broker_url, args.round_trips)
        submit_s, count = submit_sweep(db_url, args.jobs)
    raw_median, ours_median = statistics.median(raw), statistics.median(ours)
    print(f"round trip, median of {args.round_trips} (p90):")
    print(f"  raw Celery no-op task     {raw_median * 1000:7.1f} ms ({percentile(raw, 90) * 1000:.1f})")
    print(f"  ReasonFleet no-op job     {ours_median * 1000:7.1f} ms ({percentile(ours, 90) * 1000:.1f})")
    print(f"  overhead ratio            {ours_median / raw_median:7.2f}x   (target <= 3x)")
    print(f"submit a {count}-job sweep (expand + insert): {submit_s:.2f} s   (target < 10 s; {count / submit_s:,.0f} jobs/s)")


def percentile(values: list[float], pct: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


class scratch_services:
    def __enter__(self) -> tuple[str, str]:
        import redis
        from sqlalchemy import create_engine, text

        self.name = f"rf_bench_{uuid.uuid4().hex[:8]}"
        self.admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with self.admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{self.name}"'))
        self.db_url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{self.name}"
        self.lock = redis.Redis.from_url(f"{REDIS_BASE_URL}/0")
        self.token = uuid.uuid4().hex
        self.number = next(n for n in range(15, 0, -1) if self.lock.set(f"reasonfleet-test-db:{n}", self.token, nx=True, ex=3600))
        self.broker_url = f"{REDIS_BASE_URL}/{self.number}"
        redis.Redis.from_url(self.broker_url).flushdb()
        os.environ["REASONFLEET_DATABASE_URL"], os.environ["REASONFLEET_BROKER_URL"] = self.db_url, self.broker_url
        from db.migrate import upgrade
        from db.settings import reload_settings

        reload_settings()
        upgrade(self.db_url)
        return self.db_url, self.broker_url

    def __exit__(self, *_: object) -> None:
        import redis
        from sqlalchemy import text

        from db.session import get_engine

        get_engine.cache_clear()
        redis.Redis.from_url(self.broker_url).flushdb()
        if self.lock.get(f"reasonfleet-test-db:{self.number}") == self.token.encode():
            self.lock.delete(f"reasonfleet-test-db:{self.number}")
        with self.admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))


def start(argv: list[str], log: Path, ready: str = "ready.") -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "REASONFLEET_GPU_PROBE": "none", "REASONFLEET_RECONCILE_EVERY_S": "0"}
    process = subprocess.Popen(argv, cwd=log.parent, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while ready not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"worker did not start:\n{log.read_text()}")
        time.sleep(0.2)
    return process


def round_trips(db_url: str, broker_url: str, count: int) -> tuple[list[float], list[float]]:
    import redis

    from db.broker import enqueue_jobs, make_app

    work = Path(tempfile.mkdtemp(prefix="rf-bench-"))
    (work / "raw_app.py").write_text(RAW_APP.format(broker=broker_url))
    raw_worker = start([sys.executable, "-m", "celery", "-A", "raw_app", "worker", "--concurrency=1", "--pool=prefork",
                        "--without-gossip", "--without-mingle", "-Q", "bench-raw", "-n", "raw@%h", "--loglevel=INFO", *RAW_EXTRA], work / "raw.log")
    our_worker = start([sys.executable, "-m", "workers.cli", "start", "--name", "ours@%h"], work / "ours.log")
    try:
        sys.path.insert(0, str(work))
        from raw_app import app as raw_app  # type: ignore[import-not-found]

        done = redis.Redis.from_url(broker_url)
        app = make_app()
        raw, ours = [], []
        for i in range(count + 3):  # the first 3 of each warm up connections and imports
            key = f"bench-raw-{i}"
            sent = time.time()
            raw_app.send_task("bench.noop", args=[key], queue="bench-raw")
            raw.append(float(_wait(lambda key=key: done.get(key))) - sent)
            job_id = _noop_job(i)
            sent = time.time()
            enqueue_jobs(app, [job_id])
            ours.append(_wait(lambda job_id=job_id: _finished_at(job_id)) - sent)
        return raw[3:], ours[3:]
    finally:
        for process in (raw_worker, our_worker):
            process.terminate()
            process.wait(timeout=30)


def _wait(probe, timeout: float = 30):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.01)  # latency comes from timestamps; a slow poll only spares the CPU
    raise SystemExit("a no-op did not finish in 30 s")


def _noop_job(i: int) -> str:
    from db import crud
    from db.crud import JobDraft
    from db.session import session_scope
    from jobs.noop import NoopJobSpec
    from orchestrator.expand import content_hash

    spec = NoopJobSpec(tag=f"bench-{i}-{uuid.uuid4().hex[:6]}").model_dump(mode="json")
    draft = JobDraft(spec_hash=content_hash(spec), kind="noop", label=f"bench noop {i}", spec=spec, vram_mb=0, queue="reasonfleet")
    with session_scope() as session:
        report = crud.record_sweep(session, name=f"bench-{i}", seed=0, spec={}, spec_hash=content_hash({"sweep": spec}), drafts=[draft], max_attempts=1)
        return report.to_enqueue[0]


def _finished_at(job_id: str) -> float | None:
    from db.models import Job
    from db.session import session_scope

    with session_scope() as session:
        job = session.get(Job, job_id)
        return job.finished_at.timestamp() if job.state == "succeeded" else None


def submit_sweep(db_url: str, jobs: int) -> tuple[float, int]:
    """A sweep whose train grid expands to `jobs` jobs (half train, half eval), expanded and recorded."""
    from db import crud
    from db.session import session_scope
    from orchestrator.expand import expand, sweep_hash
    from orchestrator.sweep import SweepSpec

    ranks = list(range(1, 51))
    traces = list(range(1, max(1, jobs // 2 // len(ranks)) + 1))
    sweep = SweepSpec.model_validate({
        "name": "bench-10k", "model": {"id": "Qwen/Qwen2.5-0.5B-Instruct"}, "dataset": {"name": "synthetic", "n": 10},
        "train": {"method": "lora", "lora_rank": ranks, "traces": traces}, "eval": {"include_base": False},
    })
    started = time.perf_counter()
    drafts = expand(sweep)
    with session_scope() as session:
        report = crud.record_sweep(
            session, name=sweep.name, seed=sweep.seed, spec=sweep.model_dump(mode="json"), spec_hash=sweep_hash(sweep),
            drafts=drafts, max_attempts=3,
        )
    elapsed = time.perf_counter() - started
    assert report.new_jobs == len(drafts) and len(report.to_enqueue) == len(ranks) * len(traces)
    return elapsed, len(drafts)


if __name__ == "__main__":
    main()
