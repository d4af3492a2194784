"""Secrets at the trust boundary (issue #17, item 5): masked wherever a URL is shown, never on a command line."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from db.settings import Settings, mask_url, url_has_secret

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("rediss://:s3cret@h:6380/0?ssl_cert_reqs=required", "rediss://:***@h:6380/0?ssl_cert_reqs=required"),
        ("postgresql+psycopg://rf:s3cret@db/rf", "postgresql+psycopg://rf:***@db/rf"),
        ("postgresql://rf:p@ss/w0rd@db/rf", "postgresql://rf:***@db/rf"),
        ("redis://h:6379/0?password=s3cret&ssl_cert_reqs=required", "redis://h:6379/0?password=***&ssl_cert_reqs=required"),
        ("redis://h/0?db=1&Token=s3cret;secret=s3cret", "redis://h/0?db=1&Token=***;secret=***"),
        ("postgresql://rf@db/rf?sslmode=require&sslpassword=s3cret", "postgresql://rf@db/rf?sslmode=require&sslpassword=***"),
        ("s3://bucket/x?access_key=AK&secret_key=s3cret", "s3://bucket/x?access_key=***&secret_key=***"),
        ("redis://h:6379/0?email=a@b", "redis://h:6379/0?email=a@b"),
    ],
)
def test_userinfo_and_query_string_secrets_are_masked(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert url_has_secret(url) == (url != masked)


def test_a_query_string_password_moves_into_the_userinfo_which_celery_masks_too() -> None:
    settings = Settings(broker_url="redis://h:6379/0?password=s%2F3@cret&ssl_cert_reqs=required")
    assert settings.broker_url == "redis://:s%2F3%40cret@h:6379/0?ssl_cert_reqs=required"
    assert "cret" not in repr(settings)
    from db.broker import make_app

    assert "cret" not in make_app(settings).connection_for_write().as_uri()  # what the worker's banner prints


def worker(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REASONFLEET_")}
    clean |= {"PYTHONPATH": str(REPO), "NO_COLOR": "1", "REASONFLEET_GPU_PROBE": "none", **(env or {})}
    return subprocess.run([sys.executable, "-m", "workers.cli", "start", *args], env=clean, capture_output=True,
                          text=True, timeout=60)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("option", "url", "variable"),
    [
        ("--broker", "redis://:hunter2@127.0.0.1:6379/0", "REASONFLEET_BROKER_URL"),
        ("--broker", "redis://127.0.0.1:6379/0?password=hunter2", "REASONFLEET_BROKER_URL"),
        ("--db", "postgresql://rf:hunter2@127.0.0.1/rf", "REASONFLEET_DATABASE_URL"),
    ],
)
def test_a_password_on_the_command_line_is_refused_with_the_safe_form(option: str, url: str, variable: str) -> None:
    result = worker(option, url)
    assert result.returncode == 2, result.stderr
    message = result.stderr.strip()
    assert message.startswith(f"error: {option}: the URL holds a password") and message.count("\n") == 0
    assert f"--env-file worker.env` with the line {variable}=" in message and "***" in message
    assert "hunter2" not in result.stdout + result.stderr


def test_credentials_come_from_an_env_file_and_stay_masked(tmp_path: Path) -> None:
    env_file = tmp_path / "worker.env"
    port = closed_port()
    env_file.write_text(
        "# lines other than REASONFLEET_* are ignored\nPOSTGRES_PASSWORD=other\n"
        f"REASONFLEET_BROKER_URL=redis://:hunter2@127.0.0.1:{port}/0\n"
        "REASONFLEET_DATABASE_URL=sqlite:///" + str(tmp_path / "x.db") + "\n"
        "REASONFLEET_SERVICE_WAIT_S=0\n"
    )
    env_file.chmod(0o600)
    result = worker("--env-file", str(env_file))
    assert result.returncode == 3, result.stderr  # it read the file: the broker it names is down
    assert f"cannot reach the broker at redis://:***@127.0.0.1:{port}/0" in result.stderr
    assert "hunter2" not in result.stdout + result.stderr and "warning" not in result.stderr

    env_file.chmod(0o644)
    assert "is readable by other users; chmod 600" in worker("--env-file", str(env_file)).stderr
    missing = worker("--env-file", str(tmp_path / "nope.env"))
    assert missing.returncode == 2 and "--env-file: no such file" in missing.stderr
