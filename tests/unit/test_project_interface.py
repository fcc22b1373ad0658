"""The Makefile is the interface, CI runs it, the README's first screen says how (STYLE.md 15)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REQUIRED_TARGETS = [
    "help",
    "setup",
    "up",
    "down",
    "status",
    "run",
    "test",
    "test-unit",
    "test-integration",
    "lint",
    "fmt",
    "bench",
]
FIRST_SCREEN = 25


def test_make_help_lists_every_target_the_project_promises() -> None:
    result = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    listed = set(re.findall(r"^\s*make\s+(\S+)", result.stdout, flags=re.MULTILINE))
    assert [t for t in REQUIRED_TARGETS if t not in listed] == []


def test_make_help_is_the_default_goal() -> None:
    def run(*args: str) -> str:
        return subprocess.run(
            ["make", "--no-print-directory", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout

    assert run() == run("help")


@pytest.fixture
def fake_make(tmp_path: Path) -> Path:
    """A `make` that records its arguments and fails `make test` when FAKE_MAKE_TEST_RC says so."""
    record = tmp_path / "calls"
    script = tmp_path / "bin" / "make"
    script.parent.mkdir()
    script.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$*" >> "{record}"\n'
        'if [ "$1" = test ]; then exit "${FAKE_MAKE_TEST_RC:-0}"; fi\n'
    )
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("test_rc", [0, 2])
def test_ci_runs_make_test_and_reports_its_failure(fake_make: Path, test_rc: int) -> None:
    env = {
        **os.environ,
        "PATH": f"{fake_make.parent}:{os.environ['PATH']}",
        "FAKE_MAKE_TEST_RC": str(test_rc),
    }
    result = subprocess.run(
        ["bash", str(ROOT / ".ci/run")], env=env, capture_output=True, timeout=60, check=False
    )
    calls = (fake_make.parent.parent / "calls").read_text().splitlines()
    assert calls[0] == "test"
    assert (result.returncode != 0) == (test_rc != 0)


def test_readme_first_screen_gives_the_two_setup_commands() -> None:
    readme = ROOT / "README.md"
    assert readme.exists(), "README.md is missing"
    first_screen = "\n".join(readme.read_text().splitlines()[:FIRST_SCREEN])
    assert "make run" in first_screen
    assert "make test" in first_screen


def test_a_killed_service_left_as_a_zombie_counts_as_stopped(tmp_path: Path) -> None:
    # `kill -9` of a service leaves a zombie until its parent reaps it, and `kill -0` succeeds
    # on a zombie: `make up` used to say "already running" and never restart the service
    zombie = subprocess.Popen(["true"])  # exits at once; not waited for, so it stays a zombie
    try:
        state = ""
        for _ in range(200):  # until it has exited (a bounded poll, not a sleep)
            state = subprocess.run(
                ["ps", "-o", "stat=", "-p", str(zombie.pid)], capture_output=True, text=True
            ).stdout.strip()
            if state.startswith("Z"):
                break
        assert state.startswith("Z")
        (tmp_path / "pids").mkdir()
        (tmp_path / "pids" / "checkout.pid").write_text(f"{zombie.pid}\n")
        env = {**os.environ, "LEADLINE_RUN_DIR": str(tmp_path), "LEADLINE_SERVICES": "checkout:1"}
        status = subprocess.run(
            ["bash", str(ROOT / "deploy/local/services.sh"), "status"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert status.stdout.split() == ["checkout", "stopped"]
    finally:
        zombie.wait()


def test_the_image_copies_every_package_the_project_installs() -> None:
    # a package left out of the image is a service that dies with "No module named …"
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    dockerfile = (ROOT / "deploy/Dockerfile").read_text()
    allowed = (ROOT / ".dockerignore").read_text().splitlines()
    assert [p for p in packages if f"COPY {p} ./{p}" not in dockerfile] == []
    assert [p for p in packages if f"!{p}" not in allowed] == []
