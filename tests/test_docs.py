"""The README and docs/ stay true to the tree: every repository path they
name exists, the README's layout table names every folder, and the README
opens with the two-command quick start."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))

# Paths in the docs that are examples or live outside the repository: an
# operator's data directory, snapshot or output folder, generated folders,
# the shared data sets beside the checkout.
PLACEHOLDER_PREFIXES = ("DIR/", "DATA_DIR/", ".data/", ".venv", "../")

# Folders another branch is creating while this one is written: the future
# path is accepted while the file it replaces still exists. Once the
# replacement is merged the stand-in is gone and the future path must exist;
# then drop the entry.
PENDING = {
    "graph/eventlog/": "graph/eventlog.py",  # event-log readers become a package
}

# Folders the layout table need not name: caches, virtualenvs, build output.
NOT_SOURCE = {"__pycache__", "build", "dist", "node_modules"}

_FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
_SPAN = re.compile(r"`([^`\n]+)`")
_PATHLIKE = re.compile(r"^[A-Za-z0-9_.<>/*-]+$")


def _inline_code(text: str) -> list[str]:
    """Inline code spans outside fenced blocks (commands in fenced blocks
    use operator paths such as DIR/wal)."""
    return _SPAN.findall(_FENCE.sub("", text))


def _repo_paths(text: str) -> list[str]:
    """Words in inline code that look like a path in this repository: a
    '/' in them, or a .py/.proto/.md name; flags, URLs and placeholders
    left out."""
    out: list[str] = []
    for span in _inline_code(text):
        for word in span.split():
            word = word.strip(",;:()\"'").removesuffix("...")
            if word.startswith("-") or not _PATHLIKE.match(word):
                continue
            if "/" not in word and not word.endswith((".py", ".proto", ".md")):
                continue
            if word.startswith(PLACEHOLDER_PREFIXES) or word.startswith("contactgraph.v1"):
                continue
            out.append(word)
    return out


@functools.cache
def _file_names() -> frozenset[str]:
    """Names of the files in the tree, hidden folders and caches skipped
    (a checkout may hold a whole virtualenv)."""
    names: set[str] = set()
    for _folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [d for d in subfolders if not d.startswith(".") and d not in NOT_SOURCE]
        names.update(files)
    return frozenset(names)


def _exists(path: str) -> bool:
    if path in PENDING:
        return (ROOT / path).exists() or (ROOT / PENDING[path]).exists()
    if "<" in path or "*" in path:
        # A pattern such as service/safety/rules/<family>.py: its folder
        # (the part before the first placeholder) must exist or be pending.
        head = path[: min(i for i in (path.find("<"), path.find("*")) if i >= 0)]
        folder = head[: head.rfind("/") + 1]
        return (folder in PENDING and _exists(folder)) or (ROOT / folder).is_dir()
    if "/" not in path:
        # A bare file name: some file of that name in the tree.
        return path in _file_names()
    return (ROOT / path).exists()


def _doc_files() -> list[Path]:
    return [README, *DOCS]


@pytest.mark.parametrize("doc", _doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_repo_path_in_the_docs_exists(doc: Path) -> None:
    """Each path in backticks names a file or folder that is in the tree
    (placeholders and folders another branch is creating excepted)."""
    missing = sorted({p for p in _repo_paths(doc.read_text(encoding="utf-8")) if not _exists(p)})
    assert not missing, f"{doc.relative_to(ROOT)} names paths that do not exist: {missing}"


def test_docs_folder_has_the_promised_pages() -> None:
    """The README sends readers to these pages; they must be there."""
    names = {p.name for p in DOCS}
    wanted = {"api.md", "safety.md", "guardian.md", "operations.md", "performance.md", "quality.md",
              "extending.md"}
    assert wanted <= names, f"missing in docs/: {sorted(wanted - names)}"


def _layout_table(readme: str) -> list[str]:
    """The first-column cells of the table under '## Layout'."""
    section = readme.split("\n## Layout", 1)
    assert len(section) == 2, "README.md has no '## Layout' section"
    body = section[1].split("\n## ", 1)[0]
    cells: list[str] = []
    for line in body.splitlines():
        if line.startswith("|") and not set(line) <= set("|-: "):
            cells.append(line.split("|")[1])
    assert cells, "the Layout section of README.md has no table"
    return cells


def _folders_to_name() -> set[str]:
    """Every top-level folder (hidden ones but .ci left out) and every
    package folder (one with __init__.py) under graph/, service/ and
    tests/."""
    out = {f"{p.name}/" for p in ROOT.iterdir()
           if p.is_dir() and (not p.name.startswith(".") or p.name == ".ci") and p.name not in NOT_SOURCE
           and not p.name.endswith(".egg-info")}
    for top in ("graph", "service", "tests"):
        for init in (ROOT / top).rglob("__init__.py"):
            folder = init.parent
            if folder == ROOT / top or NOT_SOURCE & set(folder.parts):
                continue
            out.add(f"{folder.relative_to(ROOT).as_posix()}/")
    return out


def test_layout_table_names_every_folder() -> None:
    """The README's layout table has a row naming each folder of the tree."""
    named: set[str] = set()
    for cell in _layout_table(README.read_text(encoding="utf-8")):
        named |= {c if c.endswith("/") else f"{c}/" for c in _SPAN.findall(cell)}
    missing = sorted(_folders_to_name() - named)
    assert not missing, f"README.md's layout table does not name: {missing}"


def test_readme_starts_with_the_two_command_quick_start() -> None:
    """The first section is the quick start, and its first code block is
    exactly `make run` and `make test`."""
    text = README.read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", text, re.MULTILINE)
    assert headings and headings[0].strip().lower() == "quick start", \
        f"README.md's first section is {headings[:1]}, not 'Quick start'"
    block = re.search(r"^```[a-z]*\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    assert block is not None, "README.md has no code block"
    commands = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    assert [c for c in commands if c] == ["make run", "make test"]
    # At the top: right after the title and a short introduction.
    heading = text.index("## Quick start")
    assert heading < text.index(block.group(0))
    assert text[:heading].count("\n") <= 15, "the quick start must follow the title and a short introduction"
