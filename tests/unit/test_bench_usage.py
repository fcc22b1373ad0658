"""bench.usage reads a process *tree* from /proc: children alive and children reaped count."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from bench import usage

BURN = [sys.executable, "-c", "sum(i * i for i in range(3_000_000))"]


def test_a_running_child_is_part_of_the_tree() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=-1)
    try:
        assert child.pid in set(usage.tree(os.getpid()))
        assert usage.rss_mib(os.getpid()) > usage.rss_mib(child.pid) > 0
    finally:
        child.communicate(b"")


def test_a_child_measured_on_its_own_is_left_out_of_its_parents_tree() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=-1)
    try:
        assert child.pid not in set(usage.tree(os.getpid(), frozenset({child.pid})))
        with_child = usage.rss_mib(os.getpid())
        assert usage.rss_mib(os.getpid(), frozenset({child.pid})) < with_child
    finally:
        child.communicate(b"")


def test_the_cpu_of_a_reaped_child_is_charged_to_its_parent() -> None:
    def children() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    before, reaped_before = usage.cpu_seconds(os.getpid()), children()
    subprocess.run(BURN, check=True)
    burnt = children() - reaped_before
    assert burnt > 0
    tick = 1 / os.sysconf("SC_CLK_TCK")
    # the kernel's own account of the child, at the resolution of /proc (a tick each way)
    assert usage.cpu_seconds(os.getpid()) - before >= burnt - 2 * tick


def test_infrastructure_is_found_by_the_pid_files_infra_sh_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pids, home = tmp_path / "pids", tmp_path / "pg"
    (home / "data").mkdir(parents=True)
    pids.mkdir()
    (pids / "kafka-2.pid").write_text(f"{os.getpid()}\n")
    (pids / "kafka-3.pid").write_text("999999999\n")  # gone: left out
    (pids / "postgres.dir").write_text(f"{home}\n")
    (home / "data" / "postmaster.pid").write_text(f"{os.getppid()}\n/some/data\n")
    monkeypatch.setattr(usage, "RUN", tmp_path)
    assert usage.infrastructure() == {"kafka (kafka-2)": os.getpid(), "postgresql": os.getppid()}
