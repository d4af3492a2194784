"""Shared fixtures. Model fixtures live in tests/model_fixtures.py, service fixtures in tests/service_fixtures.py."""

pytest_plugins = ["tests.model_fixtures", "tests.service_fixtures"]
