"""How our packages import each other, read from the source with ``ast``
(nothing is imported):

- no ``from X import _name`` across modules of ``graph`` and ``service``: a
  private name stays in its file (a helper two modules need is public in
  one of them);
- no import cycle among the modules of ``graph/``, nor among those of
  ``service/``, lazy imports inside functions included;
- ``graph/`` never imports ``service`` or gRPC (DESIGN.md: dependencies
  point one way, and the rebuild runs without gRPC).

Each check reports the offending files and lines. The checkers are tested
on small hand-built trees too, so that a check that finds nothing is known
to be looking.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("graph", "service")

# Private names imported across modules that predate this test and are too
# big to fix at once: (importing module, imported module, name), each with
# a comment naming the issue that removes it (none when it was written).
PRIVATE_IMPORT_ALLOWED: frozenset[tuple[str, str, str]] = frozenset()

# Import cycles that predate this test, each as the sorted tuple of the
# modules on it (none did when it was written).
CYCLES_ALLOWED: frozenset[tuple[str, ...]] = frozenset()


@dataclass(frozen=True)
class Import:
    """One imported module (and the name taken from it, "" for a plain
    ``import``) at ``path:line``."""

    path: Path
    line: int
    importer: str
    module: str
    name: str

    def where(self, root: Path) -> str:
        return f"{self.path.relative_to(root)}:{self.line}"


def module_name(path: Path, root: Path) -> str:
    """``graph/eventlog/common.py`` -> ``graph.eventlog.common``; a
    package's ``__init__.py`` is the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Every module of ``packages`` under ``root``: dotted name -> file."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            found[module_name(path, root)] = path
    return found


def _absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    """The module a ``from ... import`` names, relative levels resolved."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    # In a package's __init__, "." is the package itself.
    keep = len(base) - node.level + (1 if is_package else 0)
    if keep <= 0:
        raise ValueError(f"{importer}: relative import beyond the top-level package")
    prefix = ".".join(base[:keep])
    return f"{prefix}.{node.module}" if node.module else prefix


@functools.cache
def _parse(path: Path) -> ast.Module:
    # Parsed once per run: several checks walk the same files.
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def imports(root: Path, packages: tuple[str, ...]) -> Iterator[Import]:
    """Every import in the modules of ``packages``, at any depth (lazy
    imports in functions and ``TYPE_CHECKING`` blocks included). For
    ``from P import n``, ``module`` is ``P.n`` when that is one of our
    modules (a submodule imported by name), else ``P``."""
    ours = modules(root, packages)
    for importer, path in ours.items():
        for node in ast.walk(_parse(path)):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(path, node.lineno, importer, alias.name, "")
            elif isinstance(node, ast.ImportFrom):
                source = _absolute(node, importer, path.name == "__init__.py")
                for alias in node.names:
                    submodule = f"{source}.{alias.name}"
                    if submodule in ours:
                        yield Import(path, node.lineno, importer, submodule, "")
                    else:
                        yield Import(path, node.lineno, importer, source, alias.name)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _ours(module: str, packages: tuple[str, ...]) -> bool:
    return module.split(".")[0] in packages


def private_imports(root: Path, packages: tuple[str, ...]) -> list[Import]:
    """``from X import _name`` where X is another of our modules (or a
    private module imported by name: ``from . import _helpers``)."""
    found = []
    for imp in imports(root, packages):
        if not _ours(imp.module, packages) or imp.module == imp.importer:
            continue
        if _is_private(imp.name) or (not imp.name and _is_private(imp.module.rsplit(".", 1)[-1])):
            found.append(imp)
    return found


def import_graph(root: Path, package: str) -> nx.DiGraph:
    """Modules of ``package`` -> the modules of it they import; each edge
    keeps the lines (``where``) that make it."""
    graph = nx.DiGraph()
    graph.add_nodes_from(modules(root, (package,)))
    for imp in imports(root, (package,)):
        if imp.module in graph and imp.module != imp.importer:
            if not graph.has_edge(imp.importer, imp.module):
                graph.add_edge(imp.importer, imp.module, where=[])
            where = graph.edges[imp.importer, imp.module]["where"]
            if imp.where(root) not in where:  # one line may import several names
                where.append(imp.where(root))
    return graph


def cycles(root: Path, package: str) -> list[list[str]]:
    """Import cycles among the modules of ``package``, each as the modules
    on it in import order, the first the smallest name."""
    found = []
    for cycle in nx.simple_cycles(import_graph(root, package)):
        start = cycle.index(min(cycle))
        found.append(cycle[start:] + cycle[:start])
    return sorted(found)


def _describe_cycle(root: Path, package: str, cycle: list[str]) -> str:
    graph = import_graph(root, package)
    hops = zip(cycle, cycle[1:] + cycle[:1], strict=True)
    return " -> ".join(f"{a} ({', '.join(graph.edges[a, b]['where'])})" for a, b in hops) + f" -> {cycle[0]}"


def forbidden_imports(root: Path, package: str) -> list[Import]:
    """Imports of service or gRPC (grpc, grpc_*, generated *_pb2_grpc) in
    ``package``."""
    found = []
    for imp in imports(root, (package,)):
        top = imp.module.split(".")[0]
        leaf = imp.name or imp.module.rsplit(".", 1)[-1]
        if top in ("service", "grpc") or top.startswith("grpc_") or leaf.endswith("_pb2_grpc"):
            found.append(imp)
    return found


class TestOurCode:
    def test_no_private_name_crosses_a_module(self) -> None:
        """No module of graph/ or service/ imports another's private name."""
        found = [imp for imp in private_imports(ROOT, PACKAGES)
                 if (imp.importer, imp.module, imp.name) not in PRIVATE_IMPORT_ALLOWED]
        assert not found, "private names imported across modules:\n" + "\n".join(
            f"{imp.where(ROOT)}: {imp.importer} imports {imp.name or imp.module} from {imp.module}" for imp in found
        )

    def test_private_allow_list_is_current(self) -> None:
        """Every allowed private import still exists: a fixed one leaves the list."""
        found = {(imp.importer, imp.module, imp.name) for imp in private_imports(ROOT, PACKAGES)}
        stale = PRIVATE_IMPORT_ALLOWED - found
        assert not stale, sorted(stale)

    @pytest.mark.parametrize("package", PACKAGES)
    def test_no_import_cycle(self, package: str) -> None:
        """The modules of a package import each other without a loop."""
        found = [c for c in cycles(ROOT, package) if tuple(sorted(c)) not in CYCLES_ALLOWED]
        assert not found, f"import cycles in {package}/:\n" + "\n".join(
            _describe_cycle(ROOT, package, c) for c in found
        )

    def test_cycle_allow_list_is_current(self) -> None:
        """Every allowed cycle still exists: a broken one leaves the list."""
        found = {tuple(sorted(c)) for package in PACKAGES for c in cycles(ROOT, package)}
        stale = CYCLES_ALLOWED - found
        assert not stale, sorted(stale)

    def test_graph_imports_neither_service_nor_grpc(self) -> None:
        """graph/ is usable without the server: no service, no gRPC."""
        found = forbidden_imports(ROOT, "graph")
        assert not found, "graph/ imports service or gRPC:\n" + "\n".join(
            f"{imp.where(ROOT)}: {imp.module}{'.' + imp.name if imp.name else ''}" for imp in found
        )


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


class TestCheckers:
    @pytest.mark.parametrize(
        ("files", "expected"),
        [
            ({"graph/a.py": "from .b import _x\n", "graph/b.py": "_x = 1\n"}, [("graph.a", "_x")]),
            ({"graph/a.py": "from graph.b import _x\n", "graph/b.py": "_x = 1\n"}, [("graph.a", "_x")]),
            ({"graph/p/__init__.py": "from .a import _x\n", "graph/p/a.py": "_x = 1\n"}, [("graph.p", "_x")]),
            ({"graph/p/a.py": "from .. import _x\n", "graph/__init__.py": "_x = 1\n"}, [("graph.p.a", "_x")]),
            ({"graph/a.py": "def f():\n    from service.b import _y\n", "service/b.py": "_y = 1\n"},
             [("graph.a", "_y")]),
            ({"graph/a.py": "from . import _helpers\n", "graph/_helpers.py": ""}, [("graph.a", "")]),
            ({"graph/a.py": "from .b import x, __version__\n", "graph/b.py": ""}, []),
            ({"graph/a.py": "from numpy import _core\n"}, []),
            ({"graph/a.py": "from __future__ import annotations\n_x = 1\n"}, []),
        ],
        ids=["relative", "absolute", "package-init", "parent", "lazy", "private-module", "public-and-dunder",
             "third-party", "future"],
    )
    def test_private_imports(self, tmp_path: Path, files: dict[str, str], expected: list[tuple[str, str]]) -> None:
        """A private name (or private module) taken from another of our
        modules is found, at any depth; public names, dunders and other
        libraries' names are not."""
        root = _tree(tmp_path, files)
        assert [(imp.importer, imp.name) for imp in private_imports(root, PACKAGES)] == expected

    @pytest.mark.parametrize(
        ("files", "expected"),
        [
            ({"graph/a.py": "from .b import x\n", "graph/b.py": "from . import a\n"}, [["graph.a", "graph.b"]]),
            ({"graph/a.py": "import graph.b\n", "graph/b.py": "def f():\n    from .a import y\n"},
             [["graph.a", "graph.b"]]),
            ({"graph/a.py": "from .b import x\n", "graph/b.py": "from .c import x\n",
              "graph/c.py": "from .a import x\n"},
             [["graph.a", "graph.b", "graph.c"]]),
            # A package's __init__ re-exporting its submodules is no cycle:
            # a submodule importing a sibling does not import the package.
            ({"graph/p/__init__.py": "from .a import x\n", "graph/p/a.py": "from .b import x\n", "graph/p/b.py": ""},
             []),
            ({"graph/a.py": "from .b import x\n", "graph/b.py": "import numpy\n"}, []),
        ],
        ids=["pair", "lazy", "three", "package-init", "none"],
    )
    def test_cycles(self, tmp_path: Path, files: dict[str, str], expected: list[list[str]]) -> None:
        """Import loops are found, lazy imports included, and named in
        import order from the smallest module."""
        root = _tree(tmp_path, files)
        assert cycles(root, "graph") == expected

    def test_cycle_report_names_the_lines(self, tmp_path: Path) -> None:
        """A cycle is reported with the file:line of each import on it."""
        root = _tree(tmp_path, {"graph/a.py": "import os\nfrom .b import x\n", "graph/b.py": "from .a import y\n"})
        assert _describe_cycle(root, "graph", ["graph.a", "graph.b"]) == (
            "graph.a (graph/a.py:2) -> graph.b (graph/b.py:1) -> graph.a"
        )

    @pytest.mark.parametrize(
        ("source", "found"),
        [
            ("import grpc\n", True),
            ("from grpc import StatusCode\n", True),
            ("import grpc_status.rpc_status\n", True),
            ("from service.durability.wal import Wal\n", True),
            ("def f():\n    import service\n", True),
            ("from contactgraph.v1 import suggestion_service_pb2_grpc\n", True),
            ("from contactgraph.v1 import graph_events_pb2\n", False),
            ("import numpy\nfrom .b import x\n", False),
        ],
    )
    def test_forbidden_imports(self, tmp_path: Path, source: str, found: bool) -> None:
        """service, grpc, grpc_* and generated gRPC stubs are caught in
        graph/, however imported; protobuf messages are not."""
        root = _tree(tmp_path, {"graph/a.py": source, "graph/b.py": ""})
        assert bool(forbidden_imports(root, "graph")) == found
