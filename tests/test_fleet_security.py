"""Broker TLS settings and masking (no services needed)."""

from __future__ import annotations

import ssl

import pytest

from db.broker import broker_tls, make_app
from db.settings import Settings, mask_url
from jobs.errors import InsecureBrokerTLS


def test_rediss_checks_certificates_by_default() -> None:
    app = make_app(Settings(broker_url="rediss://:pw@redis.example:6380/0"))
    assert app.conf.broker_use_ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert broker_tls("rediss://h:6380/0?ssl_cert_reqs=required") == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert broker_tls("redis://h:6379/0") is None


def test_cert_none_is_refused_unless_asked_for_on_purpose(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InsecureBrokerTLS, match=r"rediss://:\*\*\*@h:6380/0\?ssl_cert_reqs=none disables certificate checks") as caught:
        broker_tls("rediss://:hunter2@h:6380/0?ssl_cert_reqs=none")
    assert "hunter2" not in str(caught.value)
    with pytest.raises(InsecureBrokerTLS, match="must be required, optional or none"):
        broker_tls("rediss://h:6380/0?ssl_cert_reqs=maybe")
    monkeypatch.setenv("REASONFLEET_ALLOW_INSECURE_TLS", "1")
    assert broker_tls("rediss://h:6380/0?ssl_cert_reqs=CERT_NONE") == {"ssl_cert_reqs": ssl.CERT_NONE}


def test_passwords_are_masked_in_every_url_form() -> None:
    assert mask_url("rediss://:s3cret@h:6380/0?ssl_cert_reqs=required") == "rediss://:***@h:6380/0?ssl_cert_reqs=required"
    assert mask_url("postgresql+psycopg://rf:s3cret@db/rf") == "postgresql+psycopg://rf:***@db/rf"


def test_celery_accepts_json_only() -> None:
    conf = make_app(Settings(broker_url="redis://h:6379/0")).conf
    assert conf.accept_content == ["json"] and conf.task_serializer == "json" and conf.event_serializer == "json"
