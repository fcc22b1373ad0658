"""The envelope's JSON Schema, committed as `schemas/json/Envelope.json`.

It is written from here, not by `schemas.generate`, because the envelope lives in shared and
schemas/ never imports shared. `python -m shared.schema_export [--check]` works like the
schemas generator; the AsyncAPI document refers to the file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from schemas.generate import ENVELOPE_FILE, JSON_SCHEMA_DIALECT, SCHEMAS_DIR, render, sync
from shared.envelope import Envelope


def envelope_schema() -> dict[str, Any]:
    return {"$schema": JSON_SCHEMA_DIALECT, **Envelope.model_json_schema(mode="validation")}


def expected_files(root: Path = SCHEMAS_DIR) -> dict[Path, str]:
    return {root / "json" / ENVELOPE_FILE: render(envelope_schema())}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.schema_export", description=__doc__)
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on drift")
    parser.add_argument("--root", type=Path, default=SCHEMAS_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    return sync(expected_files(args.root), check=args.check)


if __name__ == "__main__":
    sys.exit(main())
