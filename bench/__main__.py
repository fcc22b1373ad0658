"""`make bench`: run every benchmark module in turn, each in its own process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main() -> int:
    # the whole-system run is long and has a target of its own (`make bench-e2e`)
    modules = sorted(p.stem for p in HERE.glob("bench_*.py") if p.stem != "bench_e2e")
    failed = 0
    for name in modules:
        print(f"\n=== bench.{name}", flush=True)
        failed += (
            subprocess.run([sys.executable, "-m", f"bench.{name}"], check=False).returncode != 0
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
