"""Graph embeddings by a randomised truncated SVD of the normalised,
recency-weighted follow + interaction matrix, optionally enhanced by
ProNE's spectral propagation (Zhang, Dong, Wang, Tang, Ding: "ProNE: Fast
and Scalable Network Representation Learning", IJCAI 2019).

Deterministic for a seed. Memory is O(nnz + n * dim)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.polynomial.chebyshev as cheb
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

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
    # Spectral propagation: the degree of the Chebyshev polynomial that
    # approximates the filter (one sparse product per degree); 0 = off.
    # Off by default: at degree 6 it lifts embedding-only Recall@20 on every
    # temporal cut (e.g. CollegeMsg 70%: 0.045 -> 0.087) for ~11 CPU-s at 1M
    # users, but the pipeline built on the vectors scored lower on all six
    # cuts (-0.000 to -0.017, no single cut significant). Degree 6 is within
    # ~1e-4 of the filter; 4 and 10 ranked the same.
    propagation_order: int = 0
    # The filter's centre on the Laplacian's spectrum [0, 2] and its
    # sharpness. ProNE's defaults are 0.2 and 0.5; 0.65 and 1.0 won on the
    # 50% and 60% cuts of CollegeMsg and bitcoin-otc (embedding-only
    # Recall@20), chosen before looking at the 70/80/90% cuts we report.
    mu: float = 0.65
    theta: float = 1.0

    def __post_init__(self) -> None:
        if self.dim < 1 or self.propagation_order < 0 or self.theta <= 0 or not 0.0 <= self.mu <= 2.0:
            raise ValueError(f"bad embedding config {self}")


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


def normalised(adj: sp.csr_matrix) -> tuple[sp.csr_matrix, np.ndarray]:
    """D^-1/2 A D^-1/2 (n, n) float32 and the weighted degrees (n,);
    a row without edges stays zero."""
    degree = np.asarray(adj.sum(axis=1)).ravel()
    inv_sqrt = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1e-12)), 0.0).astype(np.float32)
    scale = sp.diags(inv_sqrt)
    return (scale @ adj @ scale).tocsr(), degree


_CHUNK = 1 << 17


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


def band_pass(lam: np.ndarray, mu: float, theta: float) -> np.ndarray:
    """ProNE's filter g(λ) = exp(-θ/2 ((λ - μ)² - 1)) on Laplacian
    eigenvalues λ: a Gaussian bump around μ."""
    return np.exp(-0.5 * theta * ((np.asarray(lam, np.float64) - mu) ** 2 - 1.0))


def filter_coefficients(order: int, mu: float, theta: float) -> np.ndarray:
    """Chebyshev coefficients (order + 1,) float64 of g(1 + x) on x in
    [-1, 1], i.e. of the filter as a polynomial in L - I = -Â.

    ProNE expands g in Chebyshev polynomials of (L - μ)² with Bessel
    coefficients, two sparse products per term; expanding in L itself costs
    one. g is entire, so interpolation at Chebyshev points converges
    faster than geometrically (at μ 0.65, θ 1 the terms past degree 6 add
    up to ~1e-4, past degree 10 to ~1e-7)."""
    # order + 1 Chebyshev points of the first kind: the fit is the interpolant.
    nodes = np.cos(np.pi * (np.arange(order + 1) + 0.5) / (order + 1))
    return np.asarray(cheb.chebfit(nodes, band_pass(1.0 + nodes, mu, theta), order), np.float64)


def propagate(norm: sp.csr_matrix, vectors: np.ndarray, config: EmbeddingConfig) -> np.ndarray:
    """ProNE's spectral propagation: Â (I - g(L)) R with L = I - Â the
    normalised Laplacian, g the band-pass filter (``band_pass``) and R the
    vectors, shape (n, d) float32 in and out.

    The gain on an eigenvector of L with eigenvalue λ is (1 - λ)(1 - g(λ)):
    zero at λ = 1 and where g = 1 (|λ - μ| = 1), largest in magnitude a
    little below μ (at μ 0.65, θ 1: -0.39 at λ 0.3, -0.34 at λ 0 and 2), so
    the low-frequency band the SVD found is reshaped rather than kept flat;
    as a polynomial in Â of degree ``propagation_order`` + 1 it mixes each
    row with that many hops of its neighbourhood."""
    coef = filter_coefficients(config.propagation_order, config.mu, config.theta).astype(np.float32)
    # Chebyshev recurrence in X = L - I = -Â, whose spectrum is in [-1, 1]:
    # T_0 R = R, T_1 R = X R, T_{k+1} R = 2 X T_k R - T_{k-1} R.
    prev = vectors
    filtered = coef[0] * vectors
    if coef.shape[0] > 1:
        cur = -(norm @ vectors)
        filtered += coef[1] * cur
        for c in coef[2:]:
            nxt = norm @ cur
            nxt *= -2.0
            nxt -= prev
            filtered += c * nxt
            prev, cur = cur, nxt
    np.subtract(vectors, filtered, out=filtered)
    return np.asarray(norm @ filtered, np.float32)


def _svd_rows(block: np.ndarray) -> np.ndarray:
    """U Σ^1/2 of the thin SVD U Σ Vᵀ of ``block`` (n, d) float32, as ProNE
    ends its propagation: the factorisation stage's row geometry (square
    root of the spectrum) for the propagated vectors.

    Computed as block V Σ^-1/2 from the eigenvectors of the (d, d) Gram
    matrix: two passes over the tall block instead of a QR; directions
    with a vanishing singular value get zero columns."""
    gram = np.zeros((block.shape[1], block.shape[1]))
    for start in range(0, block.shape[0], _CHUNK):
        # float64 Gram in slices: float32 sums over a million rows lose the
        # small singular values, a float64 copy of the block costs 2x memory.
        part = block[start:start + _CHUNK].astype(np.float64)
        gram += part.T @ part
    eigval, eigvec = np.linalg.eigh(gram)
    order = np.argsort(-eigval, kind="stable")
    sigma = np.sqrt(np.maximum(eigval[order], 0.0))
    keep = sigma > sigma[0] * 1e-6 if sigma.shape[0] and sigma[0] > 0 else np.zeros(sigma.shape[0], bool)
    scale = np.zeros_like(sigma)
    scale[keep] = sigma[keep] ** -0.5
    return np.asarray(block @ (eigvec[:, order] * scale).astype(np.float32), np.float32)


def embed(store: GraphStore, config: EmbeddingConfig | None = None, now: float | None = None) -> np.ndarray:
    """Unit-norm vectors, shape (n_rows, dim) float32; rows without any
    edge get zero vectors (they are never returned by a search)."""
    config = config or EmbeddingConfig()
    now = store.clock.now() if now is None else now
    if store.n_rows == 0:
        return np.zeros((0, config.dim), np.float32)
    # One BLAS thread: the dense work is tall-skinny products of a few ms
    # each, and OpenBLAS threads contending for shared cores turned a 1M x 42
    # Gram matrix from 0.02 s into seconds (13 s per orthonormalisation).
    with threadpool_limits(limits=1, user_api="blas"):
        return _embed(store, config, now)


def _embed(store: GraphStore, config: EmbeddingConfig, now: float) -> np.ndarray:
    n = store.n_rows
    norm, degree = normalised(adjacency(store, config, now))
    k = min(config.dim + config.oversample, n)
    rng = np.random.default_rng(config.seed)
    q = _orthonormalise((norm @ rng.standard_normal((n, k), dtype=np.float32)).astype(np.float32))
    for _ in range(config.power_iterations):
        q = _orthonormalise((norm @ q).astype(np.float32))
    small = (norm @ q).T  # (k, n) = Q^T A for symmetric A
    u_small, s, _ = np.linalg.svd(small.astype(np.float64) @ q.astype(np.float64), full_matrices=False)
    dim = min(config.dim, k)
    vectors = (q @ u_small[:, :dim].astype(np.float32)) * np.sqrt(np.abs(s[:dim])).astype(np.float32)
    if config.propagation_order > 0:
        vectors = _svd_rows(propagate(norm, vectors, config))
    # Fix each component's sign so that runs agree bit for bit.
    signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(dim)])
    vectors *= np.where(signs == 0, 1, signs).astype(np.float32)
    out = np.zeros((n, config.dim), np.float32)
    out[:, :dim] = vectors
    lengths = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, lengths, out=out, where=lengths > 0)
    out[degree == 0] = 0.0
    return out
