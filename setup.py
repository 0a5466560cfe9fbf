"""Build hook: the package generates its own protobuf/gRPC code.

Everything else about the package is declared in pyproject.toml. The
generated modules (``contactgraph.v1.*_pb2``, ``*_pb2_grpc``, ``*.pyi``) are
not committed, so every build path makes them from ``proto/contactgraph/v1``:

- a wheel or ``pip install .``: into the build directory, so the wheel holds
  them whatever the source tree contains;
- ``pip install -e .``: beside the .proto files, where the editable finder
  maps ``contactgraph`` (``proto/contactgraph``).

The compiler is the ``grpcio-tools`` pinned in ``[build-system] requires``:
generated code refuses a protobuf runtime older than the protoc that made it
and a grpcio older than the grpcio-tools that made it, so that pin decides
the lowest ``protobuf`` and ``grpcio`` the package can declare.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
PROTO_ROOT = ROOT / "proto"
PROTO_PACKAGE = Path("contactgraph", "v1")


def generate_proto(out_dir: Path) -> None:
    """Run protoc over proto/contactgraph/v1/*.proto into ``out_dir``.

    ``out_dir`` is a package root: modules land in out_dir/contactgraph/v1.
    """
    # A build requirement, so imported here: setup.py is also read by tools
    # that never build (and then need not have grpc_tools).
    from grpc_tools import protoc

    sources = sorted((PROTO_ROOT / PROTO_PACKAGE).glob("*.proto"))
    if not sources:
        raise SystemExit(f"setup.py: no .proto files under {PROTO_ROOT / PROTO_PACKAGE}")
    # `python -m grpc_tools.protoc` adds the well-known types (timestamp.proto,
    # ...) itself; protoc.main() called directly does not.
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    (out_dir / PROTO_PACKAGE).mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(source) for source in sources),
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"setup.py: protoc failed on {PROTO_ROOT / PROTO_PACKAGE} (its errors are above)")


class BuildPyWithProto(build_py):  # type: ignore[misc]  # setuptools' commands are untyped
    """build_py that also generates the protobuf/gRPC modules."""

    def run(self) -> None:
        if self.editable_mode:
            # build_py copies nothing for an editable install; the finder
            # imports contactgraph from the source tree, so generate there.
            generate_proto(PROTO_ROOT)
        super().run()
        if not self.editable_mode:
            # After the copy, so stale generated files in the source tree
            # (from an old `make proto`) are overwritten, never shipped.
            generate_proto(Path(self.build_lib))


setup(cmdclass={"build_py": BuildPyWithProto})
