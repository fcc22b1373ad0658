"""What each process costs, read from /proc (Linux only; no psutil needed): CPU seconds and
resident memory of a process *with its children*, so that PostgreSQL (a postmaster and one
backend per connection) and any wrapper are charged in full, and where Kafka and PostgreSQL run
(the pid files `deploy/local/infra.sh` writes), so that they are counted next to the services.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

RUN = Path(__file__).resolve().parents[1] / ".run"
_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    # fields after the command name, which may hold spaces
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


def tree(pid: int, apart: frozenset[int] = frozenset()) -> Iterator[int]:
    """`pid` and its descendants alive now, but for those in `apart` and theirs (processes
    measured on their own: the load generator is the parent of every service it starts)."""
    yield pid
    for child in children(pid):
        if child not in apart:
            yield from tree(child, apart)


def cpu_seconds(pid: int, apart: frozenset[int] = frozenset()) -> float:
    """utime + stime of `pid`, of its children alive now, and of those it has reaped (cutime +
    cstime): a difference of two readings is the tree's CPU time in between, backends that came
    and went included (as long as the parent waited for them, which the postmaster does).
    Processes in `apart` are left out, but once reaped they count in their parent's cutime."""
    total = 0
    for p in tree(pid, apart):
        with contextlib.suppress(OSError):  # gone between the listing and the read
            f = _stat(p)
            total += int(f[11]) + int(f[12]) + (int(f[13]) + int(f[14]) if p == pid else 0)
    return total / _TICK


def _status(pid: int) -> dict[str, int]:
    kib: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                kib[name] = int(value.split()[0])
    return kib


def rss_mib(pid: int, apart: frozenset[int] = frozenset()) -> float:
    """Resident memory of the tree: each process's private part (VmRSS - RssShmem), plus the
    largest shared part once (PostgreSQL's shared buffers are mapped by every backend)."""
    private = shared = 0
    for p in tree(pid, apart):
        s = _status(p)
        private += s.get("VmRSS", 0) - s.get("RssShmem", 0)
        shared = max(shared, s.get("RssShmem", 0))
    return (private + shared) / 1024


def _pid_in(path: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int(path.read_text().split()[0])
        if Path(f"/proc/{pid}").exists():
            return pid
    return None


def infrastructure() -> dict[str, int]:
    """The dev Kafka broker(s) and PostgreSQL `make up-infra` started, by name (those not
    running, or started some other way, are left out)."""
    found: dict[str, int] = {}
    pids = RUN / "pids"
    for f in sorted(pids.glob("kafka*.pid")):
        if (pid := _pid_in(f)) is not None:
            found[f"kafka ({f.stem})" if f.stem != "kafka" else "kafka"] = pid
    with contextlib.suppress(OSError):
        home = Path((pids / "postgres.dir").read_text().strip())
        if (pid := _pid_in(home / "data" / "postmaster.pid")) is not None:
            found["postgresql"] = pid
    return found
