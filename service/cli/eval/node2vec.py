"""node2vec (pecanpy) as an outside baseline for our embeddings.

pecanpy 2.0.9 pulls gensim, which needs numpy < 2, while the project runs
on numpy 2: it lives in a venv of its own (``.venv-node2vec``, made by
``make node2vec-venv`` or ``python -m service.cli.eval.node2vec install``) and
runs as a subprocess. The graph goes out as a weighted edge list whose node
ids are our rows, the vectors come back in word2vec text format and are
mapped to rows; nothing here imports pecanpy.

The graph is the one ``graph.embedding.embed`` factorises (the symmetric,
recency-weighted follow + interaction adjacency as of ``now``), so the two
methods see the same edges and weights. pecanpy's word2vec runs on several
threads and is not bit-reproducible even with a seed."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from graph.embedding import EmbeddingConfig, adjacency
from graph.store import GraphStore

REQUIREMENT = "pecanpy==2.0.9"
DEFAULT_VENV = Path(".venv-node2vec")


class Node2VecError(RuntimeError):
    """pecanpy failed, timed out or wrote something we cannot read."""


@dataclass(frozen=True)
class Node2VecConfig:
    """pecanpy's defaults except ``dim`` (ours) and ``workers`` (this
    machine's two cores)."""

    dim: int = EmbeddingConfig().dim
    walk_length: int = 80
    num_walks: int = 10
    window: int = 10
    epochs: int = 1
    p: float = 1.0
    q: float = 1.0
    mode: str = "SparseOTF"
    workers: int = 2
    seed: int = 7
    timeout_s: float = 3600.0

    def describe(self) -> str:
        return (f"pecanpy {self.mode}, dim {self.dim}, {self.num_walks} walks of length {self.walk_length}, "
                f"window {self.window}, {self.epochs} epoch, p {self.p:g}, q {self.q:g}, {self.workers} workers")


def executable(venv: Path = DEFAULT_VENV) -> Path | None:
    """The venv's ``pecanpy`` script, or None when it is not installed."""
    path = Path(venv) / "bin" / "pecanpy"
    return path if path.is_file() and os.access(path, os.X_OK) else None


def install(venv: Path = DEFAULT_VENV, python: str = "python3") -> Path:
    """Create the venv and install pecanpy into it (needs the package
    index); returns the ``pecanpy`` script. A venv that already has it is
    left alone."""
    found = executable(venv)
    if found is not None:
        return found
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(Path(venv) / "bin" / "pip"), "install", "--quiet", REQUIREMENT], check=True)
    found = executable(venv)
    if found is None:
        raise Node2VecError(f"{venv}: pip installed {REQUIREMENT} but there is no bin/pecanpy")
    return found


def write_edgelist(adj: sp.csr_matrix, path: Path) -> int:
    """Each undirected edge of the symmetric ``adj`` (n, n) once, as
    ``row row weight`` lines; returns the number of edges. Rows without an
    edge are absent (pecanpy gives them no vector)."""
    upper = sp.triu(adj, k=1).tocoo()
    table = np.column_stack([upper.row, upper.col, upper.data.astype(np.float64)])
    np.savetxt(path, table, fmt=["%d", "%d", "%.6g"], delimiter="\t")
    return int(upper.nnz)


def read_embeddings(path: Path, n_rows: int) -> np.ndarray:
    """Vectors from a word2vec text file (``count dim`` header, then
    ``id v_1 .. v_dim`` lines) whose ids are rows: shape (n_rows, dim)
    float32, unit norm, zero for rows the file does not have. Raises
    Node2VecError on a malformed file, an id that is not a row in
    [0, n_rows) or a repeated id."""
    path = Path(path)
    with path.open() as f:
        header = f.readline().split()
        if len(header) != 2 or not all(h.isdigit() for h in header):
            raise Node2VecError(f"{path}:1: expected 'count dim', got {' '.join(header)!r}")
        count, dim = int(header[0]), int(header[1])
        out = np.zeros((n_rows, dim), np.float32)
        seen = np.zeros(n_rows, bool)
        lines = 0
        for lineno, line in enumerate(f, start=2):
            parts = line.split()
            if not parts:
                continue
            lines += 1
            if len(parts) != dim + 1:
                raise Node2VecError(f"{path}:{lineno}: {len(parts) - 1} values, expected {dim}")
            try:
                row = int(parts[0])
                values = np.array(parts[1:], np.float32)
            except ValueError as err:
                raise Node2VecError(f"{path}:{lineno}: {err}") from None
            if not 0 <= row < n_rows:
                raise Node2VecError(f"{path}:{lineno}: id {row} is not a row in [0, {n_rows})")
            if seen[row]:
                raise Node2VecError(f"{path}:{lineno}: id {row} appears twice")
            seen[row] = True
            out[row] = values
    if lines != count:
        raise Node2VecError(f"{path}: header says {count} vectors, found {lines}")
    lengths = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, lengths, out=out, where=lengths > 0)
    return out


@dataclass(frozen=True)
class Node2VecRun:
    vectors: np.ndarray  # (n_rows, dim) float32, unit norm or zero
    seconds: float  # end to end: edge list out, pecanpy, vectors back
    pecanpy_seconds: float  # the subprocess alone
    edges: int


def run_pecanpy(script: Path, edges: Path, out: Path, config: Node2VecConfig) -> float:
    """Run pecanpy on a weighted undirected edge list; returns its wall
    seconds. Raises Node2VecError on failure or timeout."""
    argv = [str(script), "--input", str(edges), "--output", str(out), "--mode", config.mode,
            "--dimensions", str(config.dim), "--walk-length", str(config.walk_length),
            "--num-walks", str(config.num_walks), "--window-size", str(config.window),
            "--epochs", str(config.epochs), "--p", str(config.p), "--q", str(config.q),
            "--workers", str(config.workers), "--random_state", str(config.seed), "--weighted"]
    started = time.perf_counter()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=config.timeout_s)
    except subprocess.TimeoutExpired:
        raise Node2VecError(f"pecanpy did not finish in {config.timeout_s:.0f}s") from None
    if done.returncode != 0:
        raise Node2VecError(f"pecanpy exited with {done.returncode}: {done.stderr.strip()[-2000:]}")
    return time.perf_counter() - started


def node2vec_vectors(store: GraphStore, now: float, workdir: Path, *, script: Path,
                     config: Node2VecConfig | None = None,
                     embedding: EmbeddingConfig | None = None) -> Node2VecRun:
    """node2vec vectors for every row of ``store``, trained on the graph
    ``embed`` sees as of ``now``; files go to ``workdir``."""
    config = config or Node2VecConfig()
    started = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)
    edges_path, out_path = workdir / "graph.edg", workdir / "graph.emb"
    n_edges = write_edgelist(adjacency(store, embedding or EmbeddingConfig(), now), edges_path)
    if n_edges == 0:
        return Node2VecRun(np.zeros((store.n_rows, config.dim), np.float32), 0.0, 0.0, 0)
    pecanpy_s = run_pecanpy(script, edges_path, out_path, config)
    vectors = read_embeddings(out_path, store.n_rows)
    return Node2VecRun(vectors, time.perf_counter() - started, pecanpy_s, n_edges)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.cli.eval.node2vec", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("install", help=f"create the venv and pip install {REQUIREMENT}")
    p.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    p.add_argument("--python", default="python3", help="interpreter the venv is made from")
    args = parser.parse_args(argv)
    try:
        print(install(args.venv, args.python))
    except (subprocess.CalledProcessError, Node2VecError) as err:
        print(f"node2vec install: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
