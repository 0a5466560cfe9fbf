"""Small modules (issue 14): no file in graph/ or service/ over about 400
lines unless its docstring says why ("Size (over 400 lines): ...")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 400
REASON = "Size (over 400 lines):"


def oversized_without_reason(files: list[Path], root: Path = ROOT) -> list[str]:
    """The files over LIMIT lines whose module docstring gives no reason."""
    out = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        if text.count("\n") <= LIMIT:
            continue
        docstring = ast.get_docstring(ast.parse(text)) or ""
        if REASON not in docstring:
            out.append(f"{path.relative_to(root)}: {text.count(chr(10))} lines")
    return out


def test_every_long_module_says_why() -> None:
    """Every module of graph/ and service/ is at most 400 lines, or says in
    its docstring why it is longer."""
    files = sorted(p for package in ("graph", "service") for p in (ROOT / package).rglob("*.py"))
    assert files
    assert oversized_without_reason(files) == []


@pytest.mark.parametrize("docstring, flagged", [
    ("One job.", True),
    (f"One job.\n\n{REASON} one state, one lock.", False),
])
def test_the_check_reads_the_docstring(tmp_path: Path, docstring: str, flagged: bool) -> None:
    """A long file is flagged unless its docstring holds the reason; a
    comment elsewhere does not count."""
    path = tmp_path / "module.py"
    path.write_text(f'"""{docstring}"""\n' + "# " + REASON + "\n" + "x = 1\n" * (LIMIT + 5))
    assert bool(oversized_without_reason([path], tmp_path)) is flagged
