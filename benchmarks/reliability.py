"""Run the reliability suite (tests/reliability) at full size and print its counts as a table.

The test suite runs a bounded version of every case; this runs each case many more times (still
bounded in count and in time; all traffic on 127.0.0.1) and prints, per case, how many tries
ended as they must (detected/tried, recovered/tried, ...).

Run: /work/venv/bin/python benchmarks/reliability.py [--bounded] [pytest options, e.g. -k transfer]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    bounded = "--bounded" in argv
    extra = [a for a in argv if a != "--bounded"]
    with tempfile.TemporaryDirectory(prefix="adapterhub-reliability-") as tmp:
        report = Path(tmp) / "report.jsonl"
        env = {**os.environ, "ADAPTERHUB_RELIABILITY_REPORT": str(report)}
        if not bounded:
            env["ADAPTERHUB_RELIABILITY_FULL"] = "1"
        start = time.monotonic()
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "reliability",
                              "tests/reliability", *extra], cwd=ROOT, env=env)
        took = time.monotonic() - start
        rows = [json.loads(line) for line in report.read_text().splitlines()] if report.exists() else []
    print(f"\n{'bounded' if bounded else 'full'} run, {took:.0f} s, pytest exit {run.returncode}\n")
    print("| case | outcome | ok/tried | done after (s, from the start of its test) |")
    print("|---|---|---|---|")
    for row in rows:
        print(f"| {row['case']} | {row['outcome']} | {row['ok']}/{row['tried']} | {row['seconds']} |")
    ok, tried = sum(r["ok"] for r in rows), sum(r["tried"] for r in rows)
    print(f"\nall cases: {ok}/{tried} ended as they must")
    return run.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
