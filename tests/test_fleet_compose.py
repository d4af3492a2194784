"""docker-compose.yml: validated by Debian's docker-compose (1.29) `config`, then its wiring checked.

No container engine runs here; `config` needs none. CI installs docker-compose (.ci/run).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.model_fixtures import require

REPO = Path(__file__).resolve().parents[1]


def compose_config(env_file: Path) -> subprocess.CompletedProcess[str]:
    require(shutil.which("docker-compose") is not None, "docker-compose is not installed (apt-get install -y docker-compose)")
    clean_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        ["docker-compose", "-f", str(REPO / "docker-compose.yml"), "--env-file", str(env_file), "config"],
        cwd=REPO, env=clean_env, capture_output=True, text=True, timeout=60,
    )


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> dict:
    env_file = tmp_path_factory.mktemp("compose") / ".env"
    shutil.copy(REPO / ".env.example", env_file)
    result = compose_config(env_file)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_services_and_their_wiring(config: dict) -> None:
    services = config["services"]
    assert set(services) - {"minio"} == {"redis", "postgres", "migrate", "flower", "web", "worker"}
    for name in ("migrate", "flower", "worker"):
        env = services[name]["environment"]
        assert env["REASONFLEET_BROKER_URL"] == "redis://:change-me-redis@redis:6379/0"
        assert env["REASONFLEET_DATABASE_URL"] == "postgresql+psycopg://reasonfleet:change-me-postgres@postgres:5432/reasonfleet"
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "change-me-postgres"
    assert "/var/lib/postgresql/data" in services["postgres"]["volumes"][0] and "postgres-data" in config["volumes"]
    assert "--requirepass" in " ".join(services["redis"]["command"]) and services["redis"]["environment"]["REDIS_PASSWORD"] == "change-me-redis"
    assert services["flower"]["environment"]["REASONFLEET_FLOWER_AUTH"] == "admin:change-me-flower"
    assert services["flower"]["command"][:2] == ["orchestrator", "flower"]
    assert all(str(port).startswith("127.0.0.1:") for port in services["flower"]["ports"])  # not on every interface


def test_the_worker_reserves_an_nvidia_gpu_and_waits_for_healthy_services(config: dict) -> None:
    worker = config["services"]["worker"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"] and device["count"] == 1
    assert worker["command"] == ["workers", "start"]
    assert worker["depends_on"]["redis"]["condition"] == worker["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert worker["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert config["services"]["redis"]["healthcheck"] and config["services"]["postgres"]["healthcheck"]


def test_a_missing_secret_stops_compose_and_names_it(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("POSTGRES_PASSWORD=x\nFLOWER_AUTH=a:b\n")
    result = compose_config(env_file)
    assert result.returncode != 0 and "REDIS_PASSWORD" in result.stderr


def test_the_worker_keeps_its_pid_namespace_and_minio_is_an_optional_profile(config: dict) -> None:
    """No `pid: host` (workers.gpu.ProcessIdentity copes with host PIDs); MinIO only when asked for."""
    worker, minio = config["services"]["worker"], config["services"]["minio"]
    assert "pid" not in worker
    assert worker["environment"]["REASONFLEET_ARTIFACTS"] == "/artifacts"  # a volume unless a store is set
    assert worker["environment"]["AWS_SECRET_ACCESS_KEY"] == minio["environment"]["MINIO_ROOT_PASSWORD"] == "change-me-artifacts"
    assert minio["profiles"] == ["minio"] and minio["command"][:2] == ["server", "/data"]
    assert "127.0.0.1:9001:9001" in " ".join(str(port) for port in minio["ports"])  # the console stays local
