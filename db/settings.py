"""The one settings object: every REASONFLEET_* variable, its type, default and meaning, defined here once.

It lives in `db/` because that is the bottom layer every other package may import (`jobs/`
takes what it needs as parameters). Neither URL set means embedded mode: a SQLite file in
the working directory and jobs run in-process.

`get_settings()` is what code reads; the CLIs validate it at start-up, so a bad variable is
one line naming it (a `SettingsError`, exit 2) before anything runs. `workers start` turns
its options into an explicit `Settings` (`load_settings(overrides)`) and installs it for the
process and its pool children with `configure()`; nothing writes `os.environ`. The README's
configuration table is `markdown_table()` (`python -m db.settings` prints it; a test keeps
them equal).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from jobs.errors import SettingsError

ENV_PREFIX = "REASONFLEET_"
EMBEDDED_DB_FILE = "reasonfleet.db"
YieldMode = Literal["requeue", "pause"]
# Fields whose values are never echoed in an error or a repr.
SECRET_FIELDS = frozenset({"broker_url", "database_url", "flower_auth", "web_auth"})


@dataclass(frozen=True)
class Hours:
    """A daily window such as 01:00-08:00 (may wrap past midnight)."""

    start: time
    end: time

    def contains(self, moment: time) -> bool:
        if self.start <= self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end

    @classmethod
    def parse(cls, text: str) -> Hours:
        """Raises ValueError saying what is wrong (the caller names the option or variable)."""
        match = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", text)
        if not match:
            raise ValueError(f"expected HH:MM-HH:MM such as 01:00-08:00, got {text!r}")
        h1, m1, h2, m2 = map(int, match.groups())
        if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59 or (h1, m1) == (h2, m2):
            raise ValueError(f"not a valid window: {text!r}")
        return cls(time(h1, m1), time(h2, m2))

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def parse_hours(text: str) -> Hours:
    """`workers start --hours`: a window, or ValueError naming the option."""
    try:
        return Hours.parse(text)
    except ValueError as error:
        raise ValueError(f"--hours: {error}") from None


class Settings(BaseSettings):
    """Every REASONFLEET_* variable; a field's description is its row in the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True, env_ignore_empty=True)

    # --------------------------------------------------------------- services
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL (`workers start --db`); `postgres://`, `postgresql://` are normalised to psycopg 3",
        json_schema_extra={"unset": f"a SQLite file `./{EMBEDDED_DB_FILE}`"},
    )
    broker_url: str | None = Field(
        None, description="Redis URL (`workers start --broker`; `rediss://…?ssl_cert_reqs=required` for TLS)",
        json_schema_extra={"unset": "jobs run in-process"},
    )
    allow_insecure_tls: bool = Field(
        False, description="`1` accepts a `rediss://` broker URL with `ssl_cert_reqs=none` (no certificate check)"
    )
    signing_key: str | None = Field(
        None, description="message signing (`celery.security`): this machine's private key (PEM file); "
        "with the two below, every message is signed and only signed ones are accepted",
        json_schema_extra={"unset": "messages are plain JSON"},
    )
    signing_cert: str | None = Field(
        None, description="message signing: this machine's certificate (PEM file), matching the key",
        json_schema_extra={"unset": "no signing"},
    )
    signing_certs: str | None = Field(
        None, description="message signing: the certificates of every machine whose messages are trusted "
        "(a glob such as `/etc/reasonfleet/certs/*.pem`)",
        json_schema_extra={"unset": "no signing"},
    )
    # Longer than any job we expect on a home GPU: Redis re-delivers an unacked acks_late
    # message after this, so a shorter value would run long jobs twice.
    visibility_timeout_s: int = Field(
        24 * 3600, gt=0,
        description="seconds after which Redis re-delivers an unacknowledged job; keep it above your longest job",
    )
    allow_remote_code: bool = Field(
        False,
        description="`workers start --allow-remote-code`: `1` runs jobs whose model sets `trust_remote_code` (the "
        "model repo's own Python code) on this machine; other workers leave them to one that allows it",
    )
    models_dir: str | None = Field(
        None,
        description="`workers start --models-dir`: a worker loads local models (`model.path`, a local `model.id`) "
        "only from under this directory, and fails other jobs that name one (hub ids and packages stay)",
        json_schema_extra={"unset": "local model paths are loaded as the sweep names them"},
    )
    # --------------------------------------------------------------- artifacts
    artifacts: str = Field(
        "artifacts", description="artifact store root: a directory or an fsspec URL (`s3://…`) all workers reach"
    )
    artifact_cache: str = Field(
        "~/.cache/reasonfleet/artifacts", description="where workers download adapters from a remote store"
    )
    # --------------------------------------------------------------- liveness and recovery
    heartbeat_s: float = Field(3.0, gt=0, description="worker heartbeat period, seconds")
    reconcile_every_s: float = Field(60.0, ge=0, description="period of the workers' reconcile, seconds (0 = off)")
    lost_after_s: float = Field(
        120.0, gt=0,
        description="a running job whose heartbeat is older than this is lost: reconcile requeues it, "
        "another worker may claim it (`orchestrator reconcile --lost-after`)",
    )
    reconcile_grace_s: float = Field(
        30.0, ge=0, description="reconcile re-publishes a queued job whose message is missing once it is this old "
        "(`orchestrator reconcile --grace`)",
    )
    gone_after_s: float = Field(
        30.0, gt=0,
        description="`orchestrator workers` shows a worker as gone after this many seconds without a heartbeat",
    )
    db_retry_s: float = Field(
        900.0, ge=0, description="how long (seconds) a worker retries a database write before it gives up"
    )
    service_wait_s: float = Field(
        900.0, ge=0,
        description="`workers start`: how long (seconds) it waits for an unreachable broker or database, "
        "trying again with back-off, before it exits 3 (0: no wait)",
    )
    service_retry_max_s: float = Field(
        30.0, gt=0,
        description="`workers start`: the longest pause (seconds) between two tries while it waits; "
        "pauses double from 1 s up to this",
    )
    soft_shutdown_s: float = Field(
        30.0, ge=0, description="grace (seconds) for a running job on SIGTERM/Ctrl-C before it is handed back"
    )
    # --------------------------------------------------------------- yield to the owner
    hours: str | None = Field(
        None, description="`workers start --hours`: take jobs only in this daily window, e.g. `01:00-08:00`",
        json_schema_extra={"unset": "any time"},
    )
    yield_mode: YieldMode = Field(
        "requeue",
        description="`workers start --yield-mode`: a running job when the owner comes back: `requeue` or `pause`",
    )
    idle_resume_s: float = Field(
        300.0, ge=0, description="`workers start --idle-resume-s`: seconds the GPU must be idle before jobs resume"
    )
    busy_utilization: float = Field(
        30.0, ge=0, le=100,
        description="`workers start --busy-utilization`: GPU utilisation (%) that means the owner uses it",
    )
    gpu_probe: str = Field(
        "nvml", description="how a worker sees the owner's GPU use: `nvml`, `none`, or `file:/path.json` (JSON samples)"
    )
    # --------------------------------------------------------------- comparisons and flags (orchestrator.analysis)
    quick_eval_n: int = Field(
        200, ge=0, le=10_000_000,
        description="flag a run `quick-eval` when it answered fewer questions than this (0 = never by size)",
    )
    quick_eval_half_width: float = Field(
        0.07, gt=0, le=1,
        description="also flag it `quick-eval` when its 95% interval is wider than ± this (0.07 = ±7 points)",
    )
    significance: float = Field(
        0.05, gt=0, lt=1,
        description="flag a run `not-significant` when its exact McNemar p against the base is at or above this",
    )
    # --------------------------------------------------------------- monitoring
    flower_auth: SecretStr | None = Field(
        None, description="`user:password` for `orchestrator flower`",
        json_schema_extra={"unset": "`orchestrator flower` refuses to start"},
    )
    flower_url: str | None = Field(
        None, description="Flower's address as users reach it, linked from the web site's fleet page",
        json_schema_extra={"unset": "no link"},
    )
    web_auth: SecretStr | None = Field(
        None, description="`user:password` for `orchestrator web` bound to an address other than loopback",
        json_schema_extra={"unset": "`orchestrator web` serves only 127.0.0.1 / ::1 / localhost"},
    )

    @field_validator("database_url")
    @classmethod
    def _normalise_driver(cls, url: str | None) -> str | None:
        if not url:
            return None
        try:
            make_url(url)
        except ArgumentError:
            raise ValueError("not a SQLAlchemy database URL such as postgresql://user:password@host/db") from None
        # psycopg 3 is the driver we ship; plain postgres:// URLs would pick psycopg2.
        return re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", url)

    @field_validator("broker_url")
    @classmethod
    def _redis_url(cls, url: str | None) -> str | None:
        if not url:
            return None
        if not url.startswith(("redis://", "rediss://")):
            # The broker contract reads Redis's own keys (db.broker.job_ids_in_broker): no other transport.
            raise ValueError("expected a redis:// or rediss:// URL")
        return _password_in_userinfo(url)

    @field_validator("hours")
    @classmethod
    def _valid_window(cls, text: str | None) -> str | None:
        return str(Hours.parse(text)) if text else None

    @field_validator("gpu_probe")
    @classmethod
    def _known_probe(cls, choice: str) -> str:
        if choice in ("nvml", "none") or (choice.startswith("file:") and len(choice) > len("file:")):
            return choice
        raise ValueError(f"expected nvml, none or file:/path.json, got {choice!r}")

    @field_validator("flower_url")
    @classmethod
    def _plain_http_url(cls, url: str | None) -> str | None:
        if not url:
            return None
        if not re.fullmatch(r"https?://[^\s@/]+(/\S*)?", url):
            # The page shows it: a URL with user:password@ would put Flower's password on it.
            raise ValueError("expected http(s)://host[:port][/path] without credentials")
        return url

    @field_validator("flower_auth", "web_auth")
    @classmethod
    def _user_and_password(cls, auth: SecretStr | None) -> SecretStr | None:
        if auth is None:
            return None
        user, colon, password = auth.get_secret_value().partition(":")
        if not (user and colon and password):
            raise ValueError("expected user:password")  # never echo it: it is a password
        return auth

    def __repr_args__(self) -> Any:
        # A Settings in a log line or a traceback shows no password.
        for name, value in super().__repr_args__():
            yield name, mask_url(value) if name in ("broker_url", "database_url") and value else value

    @property
    def signing(self) -> bool:
        """True when messages are signed (all three signing settings given; a partial set is an error)."""
        given = [self.signing_key, self.signing_cert, self.signing_certs]
        if any(given) and not all(given):
            raise SettingsError(
                "REASONFLEET_SIGNING_KEY, REASONFLEET_SIGNING_CERT and REASONFLEET_SIGNING_CERTS go together: "
                "give all three or none"
            )
        return all(given)

    @property
    def embedded(self) -> bool:
        """True when jobs run in-process rather than through Celery."""
        return self.broker_url is None

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{Path(EMBEDDED_DB_FILE).resolve()}"

    @property
    def hours_window(self) -> Hours | None:
        return Hours.parse(self.hours) if self.hours else None

    @property
    def artifact_cache_dir(self) -> Path:
        return Path(self.artifact_cache).expanduser()


def _password_in_userinfo(url: str) -> str:
    """`redis://h/0?password=x` (which redis-py accepts) as `redis://:x@h/0`: Celery's banner and kombu's
    log lines mask a userinfo password but print a query string as it is."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    password = [value for key, value in query if key == "password"]
    if not password or parts.password:
        return url
    user = next((value for key, value in query if key == "username"), parts.username or "")
    rest = urlencode([(key, value) for key, value in query if key not in ("password", "username")])
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(user, safe='')}:{quote(password[-1], safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc, query=rest))


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def default_of(field: str) -> Any:
    """A field's default: for the code that needs it outside Settings (option help, dataclass defaults)."""
    return Settings.model_fields[field].default


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    *,
    options: Mapping[str, str] | None = None,
    env_file: Path | None = None,
) -> Settings:
    """The environment, with `overrides` (field → value, e.g. from CLI options) taking precedence.

    `env_file` (`workers start --env-file`): REASONFLEET_* lines (`NAME=value`) read below the
    environment, so passwords need not be on a command line; other names in it are ignored.

    An invalid value raises SettingsError: one line, each problem naming its variable (or the
    option in `options`, field → option name, when the value came from it); secrets are never echoed.
    """
    given = {name: value for name, value in (overrides or {}).items() if value is not None}
    try:
        return Settings(_env_file=env_file, **given) if env_file else Settings(**given)
    except ValidationError as error:
        raise SettingsError(_describe(error, given=given, options=options or {})) from None


def _describe(error: ValidationError, *, given: Mapping[str, Any], options: Mapping[str, str]) -> str:
    lines = []
    for problem in error.errors():
        field = str(problem["loc"][0]) if problem["loc"] else ""
        name = options.get(field, env_name(field)) if field in given else env_name(field)
        message = str(problem["msg"]).removeprefix("Value error, ")
        if field not in SECRET_FIELDS and problem["type"] != "value_error":
            message += f", got {problem['input']!r}"  # our own ValueErrors already say what they got
        lines.append(f"{name}: {message}")
    return "; ".join(lines)


# --------------------------------------------------------------------------- the process's settings

_configured: Settings | None = None


def get_settings() -> Settings:
    """The settings `configure()` installed, else the environment's (parsed once per distinct environment)."""
    if _configured is not None:
        return _configured
    return _from_environment(tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(ENV_PREFIX))))


@lru_cache(maxsize=4)
def _from_environment(_key: tuple[tuple[str, str], ...]) -> Settings:
    # `_key` is the REASONFLEET_* part of os.environ: a test or a caller that changes it gets fresh settings.
    return load_settings()


def configure(settings: Settings | None) -> None:
    """Install `settings` for this process (and the pool children it forks); None goes back to the environment."""
    global _configured
    _configured = settings


def reload_settings() -> Settings:
    """Forget installed and cached settings and read the environment again."""
    configure(None)
    _from_environment.cache_clear()
    return get_settings()


# Query-string keys that carry a secret (`?password=…` is accepted by redis-py; tokens, keys, signatures by others).
SECRET_QUERY_KEY = r"[^=&#;]*(?:pass|pwd|token|secret|key|auth|cred|sig)[^=&#;]*"


def mask_url(url: str | None) -> str:
    """The URL with any password replaced, safe for logs, errors and status output: the userinfo's
    password and every secret-looking query value (`?password=`, `token=`, `secret=`, `api_key=`…)."""
    if not url:
        return "<unset>"
    masked = re.sub(r"(://[^:/@?#]*:)[^?#]*@", r"\1***@", url)  # up to the last @: a password may hold @ or /
    return re.sub(rf"([?&;]{SECRET_QUERY_KEY}=)[^&#;]*", r"\1***", masked, flags=re.IGNORECASE)


def url_has_secret(url: str | None) -> bool:
    """True when the URL carries a password (userinfo or query string): it must not sit on a command line."""
    return bool(url) and mask_url(url) != url


# --------------------------------------------------------------------------- the README's table


def default_text(field: str) -> str:
    """A default as the README shows it: the variable's value in backticks, or `unset` and what that means."""
    info = Settings.model_fields[field]
    value = info.default
    if value is None:
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        return f"unset: {extra['unset']}" if "unset" in extra else "unset"
    if isinstance(value, bool):
        return f"`{int(value)}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    return f"`{value}`"


def markdown_table() -> str:
    """The README's configuration table: one row per variable, in the order of the fields."""
    rows = ["| variable | meaning | default |", "|---|---|---|"]
    for field, info in Settings.model_fields.items():
        rows.append(f"| `{env_name(field)}` | {info.description} | {default_text(field)} |")
    return "\n".join(rows)


if __name__ == "__main__":
    import sys

    sys.stdout.write(markdown_table() + "\n")
