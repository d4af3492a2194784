"""The broker contract shared by the orchestrator (publishes) and the workers (consume).

Redis carries job ids and nothing else: one Celery app configuration (JSON only, acks late,
prefetch 1), the task name, publishing a job to its memory-class queue, and reading back which
job ids have a message (for reconcile). Postgres stays the truth.

kombu's Redis transport keeps waiting messages in one list per queue (plus `<queue>\\x06\\x16<priority>`
lists for priorities) and delivered-but-unacked ones in the `unacked` hash; each message is JSON
whose base64 body is Celery's `[args, kwargs, embed]`.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import parse_qs, urlparse

import redis
from celery import Celery
from sqlalchemy import select
from sqlmodel import col

from db.models import Job, Sweep, SweepJob
from db.session import get_engine
from db.settings import Settings, get_settings, mask_url
from jobs.errors import InsecureBrokerTLS, ServiceUnavailable, SettingsError
from jobs.resources.placement import DEFAULT_QUEUE

TASK_RUN_JOB = "reasonfleet.run_job"
REGISTERED_TASKS = frozenset({TASK_RUN_JOB})  # every task a worker runs; Celery's built-ins are removed
# A job id as db.models.new_id makes it (12 hex digits), with room for ids made by hand in tests and tools.
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


def run_job_argument(args: Sequence[object], kwargs: Mapping[str, object]) -> str:
    """The job id a `reasonfleet.run_job` message carries; ValueError saying what else it carries.

    The message is the id alone (`enqueue`): any keyword, a second argument or an id that is not a
    short string came from someone else (or another version) and is refused before anything runs.
    """
    if kwargs:
        raise ValueError(f"unexpected keyword arguments {sorted(map(str, kwargs))[:5]}")
    if len(args) != 1:
        raise ValueError(f"expected one argument (the job id), got {len(args)}")
    (job_id,) = args
    if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id):
        raise ValueError(f"the job id must be a short string of letters and digits, got {repr(job_id)[:60]}")
    return job_id


def make_app(settings: Settings | None = None, *, include: Sequence[str] = ()) -> Celery:
    """The Celery app both sides share; workers pass `include` (the modules that register their tasks)."""
    settings = settings or get_settings()
    app = Celery("reasonfleet", broker=settings.broker_url or "memory://", include=list(include))
    app.conf.update(
        # pickle would let anyone who can write to Redis run code on every worker.
        task_serializer="json",
        result_serializer="json",
        event_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        # Postgres holds results and state; Celery's result backend would be a second truth.
        task_ignore_result=True,
        task_default_queue=DEFAULT_QUEUE,
        # Ack after the job, and give the message back if the worker process dies mid-job.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One job at a time per process: a GPU job must not hold a second one hostage.
        worker_prefetch_multiplier=1,
        # Longer than any job, or Redis re-delivers a long job to a second worker while it runs.
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        broker_connection_retry_on_startup=True,
        # Task events cost every job a few Redis writes; Flower switches them on (enable_events)
        # while it runs, so they are off by default. No "sent" event: the worker's "received" suffices.
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
        # The owner's Ctrl-C / SIGTERM: running jobs get a grace period, then are handed back (5.5 soft shutdown).
        worker_soft_shutdown_timeout=settings.soft_shutdown_s,
        worker_enable_soft_shutdown_on_idle=False,
    )
    tls = broker_tls(settings.broker_url, allow_insecure=settings.allow_insecure_tls)
    if tls is not None:
        app.conf.broker_use_ssl = tls
    if settings.signing:
        _sign_messages(app, settings)
    return app


def _sign_messages(app: Celery, settings: Settings) -> None:
    """celery.security: every message is JSON signed with this machine's key, and only messages signed by a
    certificate in REASONFLEET_SIGNING_CERTS are accepted: for fleets whose PCs belong to different people,
    where the broker's password alone would let any of them forge work for the others."""
    app.conf.update(
        security_key=settings.signing_key, security_certificate=settings.signing_cert,
        security_cert_store=settings.signing_certs, security_digest="sha256",
        task_serializer="auth", event_serializer="auth", accept_content=["auth"],
    )
    try:
        # Note: it also disables every other serializer in this process (kombu's registry is global).
        app.setup_security(serializer="json")
    except Exception as error:  # noqa: BLE001 - celery raises ImproperlyConfigured, SecurityError, OSError
        raise SettingsError(
            "REASONFLEET_SIGNING_KEY, REASONFLEET_SIGNING_CERT, REASONFLEET_SIGNING_CERTS: "
            f"signing cannot start: {error}"
        ) from None


def broker_tls(url: str | None, *, allow_insecure: bool | None = None) -> dict[str, ssl.VerifyMode] | None:
    """TLS options for a rediss:// URL: certificates are checked unless the URL says otherwise on purpose.

    `ssl_cert_reqs=none` is refused unless `allow_insecure` (default: REASONFLEET_ALLOW_INSECURE_TLS,
    from the settings): copying CERT_NONE from an example must not silently turn off the server check.
    """
    if not url or not url.startswith("rediss://"):
        return None
    given = (parse_qs(urlparse(url).query).get("ssl_cert_reqs") or ["required"])[0].lower()
    levels = {"required": ssl.CERT_REQUIRED, "cert_required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL,
              "cert_optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE, "cert_none": ssl.CERT_NONE}
    if given not in levels:
        raise InsecureBrokerTLS(
            f"broker URL {mask_url(url)}: ssl_cert_reqs must be required, optional or none, got {given!r}"
        )
    if allow_insecure is None:
        allow_insecure = get_settings().allow_insecure_tls
    if levels[given] == ssl.CERT_NONE and not allow_insecure:
        raise InsecureBrokerTLS(
            f"broker URL {mask_url(url)} disables certificate checks (ssl_cert_reqs={given}); "
            "set REASONFLEET_ALLOW_INSECURE_TLS=1 if you really mean it"
        )
    return {"ssl_cert_reqs": levels[given]}


def enqueue(app: Celery, job_id: str, *, queue: str | None = None, meta: dict[str, str] | None = None) -> None:
    """Publish one job. The message is the id alone; the worker reads the spec from the database.

    `meta` (sweep, kind, run label) only shapes what Flower and the logs show (kwargsrepr):
    the task receives no kwargs, and nothing secret is ever in it.
    """
    app.send_task(
        TASK_RUN_JOB, args=[job_id], queue=queue or DEFAULT_QUEUE,
        argsrepr=repr([job_id]), kwargsrepr=repr(meta or {}),
        shadow=f"reasonfleet.{meta['kind']}" if meta and meta.get("kind") else None,
    )


def enqueue_jobs(app: Celery, job_ids: Iterable[str], *, database_url: str | None = None) -> int:
    """Publish jobs to their memory-class queues; jobs no class can hold stay queued without a message."""
    ids = list(job_ids)
    if not ids:
        return 0
    query = (
        select(col(Job.id), col(Job.kind), col(Job.label), col(Job.queue), col(Job.vram_mb), col(Sweep.name))
        .join(SweepJob, col(SweepJob.job_id) == col(Job.id), isouter=True)
        .join(Sweep, col(Sweep.id) == col(SweepJob.sweep_id), isouter=True)
        .where(col(Job.id).in_(ids))
    )
    with get_engine(database_url).connect() as connection:  # Core: a read, no ORM identity map needed
        rows = connection.execute(query).all()
    sent: set[str] = set()
    for job_id, kind, label, queue, vram_mb, sweep in rows:
        if job_id in sent:
            continue  # a job shared by two sweeps: one message
        if queue is None and vram_mb is not None:
            continue  # estimated, and larger than every class: `orchestrator status` says so
        enqueue(app, job_id, queue=queue, meta={"sweep": sweep or "", "kind": kind, "run": label})
        sent.add(job_id)
    return len(sent)


def check_broker(url: str) -> None:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3).ping()
    except (redis.RedisError, OSError, ValueError) as error:
        raise ServiceUnavailable(f"cannot reach the broker at {mask_url(url)}: {error}") from None


SIGNED_CONTENT_TYPE = "application/data"  # the `auth` serializer's (message signing)
UNACKED_KEY = "unacked"
UNACKED_INDEX_KEY = "unacked_index"  # delivery tag -> delivery time


def job_ids_in_broker(client: redis.Redis, queues: Iterable[str], *, delivered_since: float | None = None) -> set[str]:
    """Job ids with a waiting message, or a delivered one (delivered after `delivered_since`, a Unix time).

    A worker holds at most the message it is running (prefetch 1, acks_late); a delivered
    message whose job is still queued after a while belongs to a dead worker and will only
    come back after the visibility timeout (hours), so the caller counts it as missing.
    """
    found: set[str] = set()
    for queue in queues:
        for key in [queue, *client.scan_iter(match=f"{queue}\x06\x16*")]:
            found.update(filter(None, map(_job_id, client.lrange(key, 0, -1))))
    fresh = None
    if delivered_since is not None:
        fresh = {tag for tag in client.zrangebyscore(UNACKED_INDEX_KEY, delivered_since, "+inf")}
    for tag, raw in client.hgetall(UNACKED_KEY).items():
        if fresh is not None and tag not in fresh:
            continue
        try:
            message = json.loads(raw)[0]
        except (ValueError, IndexError, TypeError):
            continue
        job_id = _job_id(json.dumps(message))
        if job_id:
            found.add(job_id)
    return found


def _job_id(raw: bytes | str) -> str | None:
    try:
        message = json.loads(raw)
        if message.get("headers", {}).get("task") != TASK_RUN_JOB:
            return None
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        if message.get("content-type") == SIGNED_CONTENT_TYPE:
            # celery.security's envelope: base64 of signer, signature, type, encoding, body joined by \x00\x01.
            body = base64.b64decode(body).split(b"\x00\x01", 4)[4]
        args = json.loads(body)[0]
        return str(args[0]) if args else None
    except (ValueError, KeyError, IndexError, TypeError):
        return None  # a foreign or pickled message is not ours to resurrect
