"""The database goes away mid-job (a home router reboots): the worker keeps the result and writes it when it is back.

The outage is real: the worker reaches Postgres through a TCP proxy in this test process,
which refuses and drops every connection until the worker has failed to write a few times.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType

import pytest
from sqlmodel import select

from db.broker import enqueue_jobs, make_app
from db.models import EvalResult, Job
from db.session import session_scope
from tests.fleet_helpers import Pace, job_states, record, tiny_eval_drafts

pytestmark = pytest.mark.slow
# A job on a cold worker (import torch and transformers, load the model) costs about four worker starts.
COLD_JOB_IN_STARTS = 4
# Failed result writes before the database comes back (the retry waits 0.5 s, then 1 s, ...).
FAILED_WRITES = 3


class FlakyProxy:
    """127.0.0.1:<port> → Postgres, with an off switch that drops every connection.

    A context manager: on exit it closes every socket and joins every thread it started.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.listener: socket.socket | None = None
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()

    def __enter__(self) -> FlakyProxy:
        self.up()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(32)
        with self.lock:
            self.listener = listener
        self._thread(self._accept, listener)

    def down(self) -> None:
        with self.lock:
            for sock in [self.listener, *self.sockets]:
                if sock is not None:
                    _shut(sock)
            self.sockets, self.listener = [], None

    def close(self, timeout: float = 10.0) -> None:
        """Down for good: no thread of the proxy outlives its test."""
        self.down()
        for thread in self.threads:
            thread.join(timeout)
        alive = [thread.name for thread in self.threads if thread.is_alive()]
        assert not alive, f"proxy threads still running {timeout:.0f} s after close: {alive}"

    def _thread(self, target: Callable[..., None], *args: socket.socket) -> None:
        thread = threading.Thread(target=target, args=args, name=f"flaky-proxy-{target.__name__}", daemon=True)
        with self.lock:
            self.threads.append(thread)
        thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # down: the listener was shut
            self._connect(listener, client)

    def _connect(self, listener: socket.socket, client: socket.socket) -> None:
        """Pump `client` to a new upstream connection, unless the proxy went down since it was accepted."""
        try:
            upstream = socket.create_connection(self.target)
        except OSError:
            _shut(client)
            return
        with self.lock:
            if listener is not self.listener:
                _shut(client)
                _shut(upstream)
                return
            self.sockets += [client, upstream]
        self._thread(self._pump, client, upstream)
        self._thread(self._pump, upstream, client)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            # shutdown, not only close: it wakes the pump reading the other way, blocked in recv.
            _shut(source)
            _shut(sink)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def _state(job_id: str) -> str:
    with session_scope() as session:
        return session.get(Job, job_id).state


def test_a_result_computed_during_a_database_outage_is_written_when_it_returns(tiny_model, start_worker, service_env, postgres_url) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url)
    pace = Pace()
    with FlakyProxy((url.host or "127.0.0.1", url.port or 5432)) as proxy:
        through_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        with pace.timing("starting the worker"):
            worker = start_worker({"REASONFLEET_DATABASE_URL": through_proxy, "REASONFLEET_GPU_PROBE": "none", "REASONFLEET_RECONCILE_EVERY_S": "0"})
        _, (job_id,) = record("db-outage", tiny_eval_drafts(str(tiny_model.path), 1, n=6, max_new_tokens=24, tag="outage"))
        enqueue_jobs(make_app(), [job_id])
        states = lambda: job_states([job_id])  # noqa: E731

        pace.wait(lambda: _state(job_id) == "running", "the job to start", detail=states)
        proxy.down()  # from here the worker cannot reach the database at all
        failed = time.monotonic()
        pace.wait(lambda: "database unreachable" in worker.output(), "the worker to hit the outage", steps=COLD_JOB_IN_STARTS, detail=states)
        pace.measure("the job until its first failed write", time.monotonic() - failed)
        tries = f"database unreachable (attempt {FAILED_WRITES},"
        pace.wait(lambda: tries in worker.output(), f"{FAILED_WRITES} failed writes", detail=states)
        proxy.up()
        pace.wait(lambda: _state(job_id) == "succeeded", "the result to be written after the outage", detail=states)
    with session_scope() as session:
        results = session.exec(select(EvalResult).where(EvalResult.job_id == job_id)).all()
        assert len(results) == 1 and results[0].n == 6
        assert session.get(Job, job_id).attempts == 1  # written by the first attempt, not re-run
    assert worker.output().count("database unreachable (attempt") >= 1
