"""``adapterhub methods --all``: every PEFT type, and the README table generated from it."""

from __future__ import annotations

import json
import re
from pathlib import Path

from adapterhub.testing import run_cli

README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- peft-types:start -->", "<!-- peft-types:end -->"


def test_all_lists_every_peft_type():
    from peft.utils.peft_types import PeftType

    result = run_cli("methods", "--all", "--json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["peft_type"] for r in rows] == [t.value for t in PeftType]
    for r in rows:
        assert set(r) == {"peft_type", "method", "plugin", "loads", "stacks", "merges", "per_row",
                          "weighted_merge", "reason"}
        assert r["loads"] == (r["reason"] is None)
        if not r["loads"]:
            assert not (r["stacks"] or r["merges"] or r["per_row"]) and r["peft_type"] in r["reason"]
    text = run_cli("methods", "--all")
    assert text.exit_code == 0
    assert re.search(r"^LOHA\s+loha\s+yes\s+yes\s+yes\s+no$", text.stdout, re.M)


def test_readme_table_is_the_commands_output():
    """Regenerate with: adapterhub methods --all --markdown (between the markers in README.md)."""
    result = run_cli("methods", "--all", "--markdown")
    assert result.exit_code == 0, result.stderr
    text = README.read_text(encoding="utf-8")
    assert START in text and END in text
    in_readme = text.split(START, 1)[1].split(END, 1)[0].strip("\n") + "\n"
    assert in_readme == result.stdout


def test_markdown_needs_all():
    result = run_cli("methods", "--markdown")
    assert result.exit_code == 2
