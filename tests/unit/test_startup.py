"""A service refuses to start on settings that are unsafe or wrong, with one clear line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.unit.test_project_interface import ROOT


@pytest.mark.parametrize("service", ["checkout", "receipts"])
def test_a_service_without_a_secret_outside_local_refuses_to_start_in_one_line(
    service: str,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTH_", "LEADLINE_ENV"))}
    started = subprocess.run(
        [sys.executable, "-m", f"services.{service}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 2
    [line] = started.stderr.strip().splitlines()
    assert line.startswith(f"{service}: refusing to start: ")
    assert "AUTH_JWT_SECRET" in line
    assert "LEADLINE_ENV=local" in line


def test_a_malformed_setting_is_named() -> None:
    env = {**os.environ, "INVENTORY_HTTP_PORT": "eighty"}
    started = subprocess.run(
        [sys.executable, "-m", "services.inventory"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 2
    assert started.stderr.startswith("inventory: refusing to start: http_port: ")
