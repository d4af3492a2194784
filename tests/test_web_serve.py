"""`orchestrator web` as a user starts it: the checks before it listens (auth off loopback, a database that is
unreachable or not migrated), the real server process, and the pure parts of the site (the Pareto front,
unknown leaderboard keys)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from db.migrate import upgrade
from orchestrator.web.cells import shown_columns
from orchestrator.web.plots import pareto_front
from orchestrator.web.serve import is_loopback
from tests.service_fixtures import scratch_database
from tests.test_report_show import record_all
from tests.web_fixtures import free_port

REPO = Path(__file__).resolve().parents[1]


def environment(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REASONFLEET_")}
    return env | {"PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", ""), **settings}


def web(*args: str, cwd: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "orchestrator.cli", "web", *args]
    return subprocess.run(command, cwd=cwd, env=environment(**settings), capture_output=True, text=True, timeout=60)


def test_another_address_than_loopback_needs_basic_auth(tmp_path: Path) -> None:
    refused = web("--host", "0.0.0.0", cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: --host 0.0.0.0 is reachable from other machines: set REASONFLEET_WEB_AUTH")
    assert not (tmp_path / "reasonfleet.db").exists()  # refused before anything was touched
    bad = web("--host", "0.0.0.0", cwd=tmp_path, REASONFLEET_WEB_AUTH="no-colon-here")
    assert bad.returncode == 2 and "REASONFLEET_WEB_AUTH: expected user:password" in bad.stderr
    assert "no-colon-here" not in bad.stderr


def test_an_unreachable_database_stops_it_naming_the_masked_url(tmp_path: Path) -> None:
    url = "postgresql+psycopg://ana:hunter2-secret@127.0.0.1:1/reasonfleet"
    stopped = web(cwd=tmp_path, REASONFLEET_DATABASE_URL=url)
    assert stopped.returncode == 3
    assert "cannot reach the database at postgresql+psycopg://ana:***@127.0.0.1:1/reasonfleet" in stopped.stderr
    assert "hunter2" not in stopped.stderr + stopped.stdout


def test_a_database_not_migrated_stops_it(tmp_path: Path) -> None:
    with scratch_database("rf_web_empty") as url:
        stopped = web(cwd=tmp_path, REASONFLEET_DATABASE_URL=url)
    assert stopped.returncode == 3
    assert stopped.stderr.strip() == "error: the database schema is not up to date: run `orchestrator db upgrade`"


def _get(url: str, timeout: float = 30) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_the_command_serves_the_site_on_the_port_it_names(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'reasonfleet.db'}"
    upgrade(url)
    record_all(url, tmp_path)
    port = free_port()
    command = [sys.executable, "-m", "orchestrator.cli", "web", "--port", str(port)]
    server = subprocess.Popen(command, cwd=tmp_path, env=environment(), stderr=subprocess.PIPE, text=True)
    try:
        status, body = _get(f"http://127.0.0.1:{port}/sweeps/quick")
        assert status == 200 and "M + qlora-r8-t100 · greedy" in body
        status, body = _get(f"http://127.0.0.1:{port}/vendor/plotly.min.js")
        assert status == 200 and len(body) > 1_000_000  # plotly.js, from the plotly package
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=20)
    assert f"web on http://127.0.0.1:{port} · database sqlite:///" in stderr


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.20", False), ("my-pc.local", False)],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_the_pareto_front_keeps_the_runs_nothing_beats() -> None:
    # (tokens, accuracy): cheap and bad, dear and good, and two that something beats.
    points = [(100.0, 40.0), (300.0, 70.0), (200.0, 35.0), (350.0, 70.0), (150.0, 55.0)]
    assert pareto_front(points) == [0, 4, 1]
    assert pareto_front([(10.0, 50.0), (10.0, 50.0)]) == [0, 1]  # ties beat neither


def test_keys_a_newer_leaderboard_adds_become_columns() -> None:
    row = {
        "run": "M + base · greedy", "n": 10, "pass_at_1": 0.5, "ci_low": 0.2, "ci_high": 0.8, "vs_base": None,
        "mean_output_tokens": 12.0, "tokens_per_s": 9.0, "peak_memory_mb": 100.0, "memory_kind": "rss",
        "new_score": 0.4, "quantization": "q8_0", "per_sample": [1, 2],
    }
    columns = {c.header: c for c in shown_columns([row], None)}
    assert [h for h in columns if h in row] == ["run", "n", "new_score", "quantization"]
    assert columns["new_score"].text(row) == "0.4" and columns["quantization"].text(row) == "q8_0"
    assert "fix/break" not in columns and "agree" not in columns  # optional, and no run has them


def test_the_compose_web_service_asks_for_auth_and_publishes_on_loopback(tmp_path: Path) -> None:
    import shutil

    import yaml

    from tests.test_fleet_compose import compose_config

    env_file = tmp_path / ".env"
    shutil.copy(REPO / ".env.example", env_file)
    result = compose_config(env_file)
    assert result.returncode == 0, result.stderr
    web_service = yaml.safe_load(result.stdout)["services"]["web"]
    assert web_service["command"][:2] == ["orchestrator", "web"]
    assert web_service["environment"]["REASONFLEET_WEB_AUTH"] == "admin:change-me-web"
    assert web_service["ports"] == ["127.0.0.1:8000:8000/tcp"]  # loopback unless WEB_BIND says otherwise
    env_file.write_text(env_file.read_text().replace("WEB_AUTH=admin:change-me-web\n", ""))
    missing = compose_config(env_file)
    assert missing.returncode != 0 and "WEB_AUTH" in missing.stderr


def test_a_database_that_goes_away_gives_a_503_page_naming_the_masked_url() -> None:
    from fastapi.testclient import TestClient

    from orchestrator.web.app import create_app

    client = TestClient(create_app("postgresql+psycopg://ana:hunter2-secret@127.0.0.1:1/reasonfleet"))
    page = client.get("/sweeps/quick")
    assert page.status_code == 503 and "<h1>Database unavailable</h1>" in page.text
    assert "cannot read the database at postgresql+psycopg://ana:***@127.0.0.1:1/reasonfleet" in page.text
    twin = client.get("/api/sweeps")
    assert twin.status_code == 503 and twin.json()["error"].startswith("cannot read the database at ")
    assert "hunter2" not in page.text + twin.text
