"""Which job ids have a message in Redis: waiting in a queue, or delivered and not yet acknowledged.

kombu's Redis transport keeps waiting messages in one list per queue (plus `<queue>\\x06\\x16<priority>`
lists for priorities) and delivered-but-unacked ones in the `unacked` hash; each message is JSON
whose base64 body is Celery's `[args, kwargs, embed]`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable

import redis

from workers.celery_app import TASK_RUN_JOB

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
        args = json.loads(body)[0]
        return str(args[0]) if args else None
    except (ValueError, KeyError, IndexError, TypeError):
        return None  # a foreign or pickled message is not ours to resurrect
