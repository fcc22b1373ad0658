"""The `leadline` console script run as an operator runs it: a process of its own, its output
read back, and a following `events tail` read line by line with a deadline."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# the script pip installed from [project.scripts], next to this interpreter
LEADLINE = Path(sys.executable).parent / "leadline"


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, f"exit {self.code}: {self.err}"
        return json.loads(self.out)


def environment(extra: Mapping[str, str]) -> dict[str, str]:
    # wide enough that tables keep one record per line
    return {**os.environ, "COLUMNS": "250", **extra}


async def leadline(
    *args: str, env: Mapping[str, str], input: str | None = None, timeout: float = 180.0
) -> Ran:
    assert LEADLINE.exists(), f"{LEADLINE} missing: pip install -e '.[dev]' installs it"
    proc = await asyncio.create_subprocess_exec(
        str(LEADLINE),
        *args,
        env=environment(env),
        stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(None if input is None else input.encode()), timeout
        )
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode())


class Following:
    """A `leadline` that keeps running (`events tail` following): started, read line by line,
    always ended (killed if it has not ended by itself)."""

    def __init__(self, *args: str, env: Mapping[str, str]) -> None:
        self._args, self._env = args, env
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Following:
        self.proc = await asyncio.create_subprocess_exec(
            str(LEADLINE),
            *self._args,
            env=environment(self._env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()

    async def stderr_line(self, timeout: float = 60.0) -> str:
        assert self.proc is not None
        assert self.proc.stderr is not None
        return (await asyncio.wait_for(self.proc.stderr.readline(), timeout)).decode()

    async def stdout_line(self, timeout: float = 60.0) -> str:
        assert self.proc is not None
        assert self.proc.stdout is not None
        return (await asyncio.wait_for(self.proc.stdout.readline(), timeout)).decode()

    async def ended(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), timeout)
