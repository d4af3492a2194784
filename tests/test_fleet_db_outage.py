"""The database goes away mid-job (a home router reboots): the worker keeps the result and writes it when it is back.

The outage is real: the worker reaches Postgres through a TCP proxy in this test process,
which refuses and drops every connection for a few seconds.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from sqlmodel import select

from db.models import EvalResult, Job
from db.session import session_scope
from tests.fleet_helpers import record, tiny_eval_drafts, wait_until
from workers.celery_app import enqueue_jobs, make_app

pytestmark = pytest.mark.slow


class FlakyProxy:
    """127.0.0.1:<port> → Postgres, with an off switch that drops every connection."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.listener: socket.socket | None = None
        self.lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(32)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        with self.lock:
            for sock in [self.listener, *self.sockets]:
                if sock is None:
                    continue
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self.sockets, self.listener = [], None

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.close()
                except OSError:
                    pass


def test_a_result_computed_during_a_database_outage_is_written_when_it_returns(tiny_model, start_worker, service_env, postgres_url) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    proxy = FlakyProxy((url.host or "127.0.0.1", url.port or 5432))
    proxy.up()
    through_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    worker = start_worker({"REASONFLEET_DATABASE_URL": through_proxy, "REASONFLEET_GPU_PROBE": "none", "REASONFLEET_RECONCILE_EVERY_S": "0"})
    try:
        _, (job_id,) = record("db-outage", tiny_eval_drafts(str(tiny_model.path), 1, n=6, max_new_tokens=24, tag="outage"))
        enqueue_jobs(make_app(), [job_id])

        def running() -> bool:
            with session_scope() as session:
                return session.get(Job, job_id).state == "running"

        wait_until(running, 30, "the job to start")
        proxy.down()  # from here the worker cannot reach the database at all
        wait_until(lambda: "database unreachable" in worker.output(), 60, "the worker to hit the outage")
        time.sleep(3)
        proxy.up()

        def succeeded() -> bool:
            with session_scope() as session:
                return session.get(Job, job_id).state == "succeeded"

        wait_until(succeeded, 60, "the result to be written after the outage")
    finally:
        proxy.down()
    with session_scope() as session:
        results = session.exec(select(EvalResult).where(EvalResult.job_id == job_id)).all()
        assert len(results) == 1 and results[0].n == 6
        assert session.get(Job, job_id).attempts == 1  # written by the first attempt, not re-run
    assert worker.output().count("database unreachable (attempt") >= 1
