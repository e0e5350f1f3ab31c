"""Benchmarks of the search system; `python -m benchmarks` runs them all."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def save(out: Path, name: str, report: dict[str, Any], text: str) -> None:
    """Write a benchmark's raw numbers (`name.json`) and its table (`name.md`), and print the table."""
    (out / f"{name}.json").write_text(json.dumps(report, indent=2))
    (out / f"{name}.md").write_text(text + "\n")
    print("\n" + text)
