"""`leadline rebuild VIEW`: the projection's own live rebuild, run as the projection runs it.

The rebuild (shadow schema, replay, swap under the inbox's lock) is the projection's code, and
services never import each other; so the CLI starts `python -m services.projection rebuild
VIEW`, the same entry point `make rebuild` uses, with the projection's settings from the CLI's
environment. Its progress bar goes straight to the terminal; its diagnostics are kept and, if
it fails, its last line is the CLI's one line.
"""

from __future__ import annotations

import os
import subprocess
import sys

from services.cli.errors import CliError
from services.cli.settings import CliSettings


def rebuild(settings: CliSettings, view: str) -> None:
    env = {
        **os.environ,
        "PROJECTION_DATABASE_URL": settings.projection_database_url,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "LEADLINE_TOPIC_PREFIX": settings.topic_prefix,
    }
    done = subprocess.run(
        [sys.executable, "-m", "services.projection", "rebuild", view],
        env=env,
        stderr=subprocess.PIPE,
        check=False,
    )
    said = done.stderr.decode(errors="replace").strip().splitlines()
    if done.returncode != 0:
        last = said[-1] if said else f"exit status {done.returncode}"
        raise CliError(
            last.removeprefix("rebuild: "), done.returncode if done.returncode in (1, 2) else 1
        )
    if said:
        print("\n".join(said), file=sys.stderr)
