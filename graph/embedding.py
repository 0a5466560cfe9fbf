"""Graph embeddings by a randomised truncated SVD of the normalised,
recency-weighted follow + interaction matrix (the ProNE / NetMF family,
without the spectral propagation step for now).

Deterministic for a seed. Memory is O(nnz + n * dim)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .store import GraphStore


@dataclass(frozen=True)
class EmbeddingConfig:
    dim: int = 32
    power_iterations: int = 4
    oversample: int = 10
    follow_weight: float = 1.0
    interaction_weight: float = 2.0
    # Every pair that ever interacted keeps at least this weight, so a tie
    # whose strength has decayed away still shapes the neighbourhood.
    tie_floor: float = 0.25
    seed: int = 7


def adjacency(store: GraphStore, config: EmbeddingConfig, now: float) -> sp.csr_matrix:
    """Symmetric weighted adjacency (n, n) float32: follows either way plus
    log1p of the decayed interaction strength either way."""
    n = store.n_rows
    f_out, _ = store.follows.base()
    i_out, _ = store.interactions.base()
    fs, fd = f_out.edges()
    is_, id_ = i_out.edges()
    strength = store.interactions.decay(i_out.values["strength"], i_out.values["time"], now)
    rows = np.concatenate([fs, fd, is_, id_]).astype(np.int64)
    cols = np.concatenate([fd, fs, id_, is_]).astype(np.int64)
    w_int = (config.interaction_weight * np.log1p(strength) + config.tie_floor).astype(np.float32)
    vals = np.concatenate([
        np.full(fs.shape[0] * 2, config.follow_weight, np.float32), w_int, w_int,
    ])
    return sp.csr_matrix((vals, (rows, cols)), shape=(n, n), dtype=np.float32)


def _orthonormalise(block: np.ndarray) -> np.ndarray:
    """Cholesky-QR: far cheaper than Householder QR on a tall thin block;
    falls back to np.linalg.qr if the Gram matrix is not positive definite."""
    gram = block.T @ block
    try:
        chol = np.linalg.cholesky(gram.astype(np.float64) + 1e-6 * np.eye(gram.shape[0]))
        return (block @ np.linalg.inv(chol.T)).astype(np.float32)
    except np.linalg.LinAlgError:
        q, _ = np.linalg.qr(block)
        return q.astype(np.float32)


def embed(store: GraphStore, config: EmbeddingConfig | None = None, now: float | None = None) -> np.ndarray:
    """Unit-norm vectors, shape (n_rows, dim) float32; rows without any
    edge get zero vectors (they are never returned by a search)."""
    config = config or EmbeddingConfig()
    now = store.clock.now() if now is None else now
    n = store.n_rows
    if n == 0:
        return np.zeros((0, config.dim), np.float32)
    adj = adjacency(store, config, now)
    degree = np.asarray(adj.sum(axis=1)).ravel()
    inv_sqrt = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1e-12)), 0.0).astype(np.float32)
    norm = sp.diags(inv_sqrt) @ adj @ sp.diags(inv_sqrt)
    k = min(config.dim + config.oversample, n)
    rng = np.random.default_rng(config.seed)
    q = _orthonormalise((norm @ rng.standard_normal((n, k), dtype=np.float32)).astype(np.float32))
    for _ in range(config.power_iterations):
        q = _orthonormalise((norm @ q).astype(np.float32))
    small = (norm @ q).T  # (k, n) = Q^T A for symmetric A
    u_small, s, _ = np.linalg.svd(small.astype(np.float64) @ q.astype(np.float64), full_matrices=False)
    dim = min(config.dim, k)
    vectors = (q @ u_small[:, :dim].astype(np.float32)) * np.sqrt(np.abs(s[:dim])).astype(np.float32)
    # Fix each component's sign so that runs agree bit for bit.
    signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(dim)])
    vectors *= np.where(signs == 0, 1, signs).astype(np.float32)
    out = np.zeros((n, config.dim), np.float32)
    out[:, :dim] = vectors
    lengths = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, lengths, out=out, where=lengths > 0)
    out[degree == 0] = 0.0
    return out
