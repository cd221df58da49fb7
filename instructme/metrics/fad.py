"""Fréchet Audio Distance (FAD) between two sets of audio embeddings.

InstructME (arXiv 2308.14360, Sec. 5 "Evaluation metrics") scores the quality of edited
music with FAD: embeddings of the edited outputs and of the reference targets are each
modelled as a multivariate Gaussian, and the Fréchet (2-Wasserstein) distance between the
two Gaussians is reported (Kilgour et al., 2019)::

    FAD = ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))

Lower is better; two identical sets give 0. Which embedding model produced the vectors
changes the scale completely, so every FAD must be reported with the embedding's name
(see :mod:`instructme.metrics.embeddings`).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

from instructme.errors import InstructMEError

#: Diagonal offset added to both covariances when their product has no finite square root.
DEFAULT_EPS = 1e-6


def embedding_stats(emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and (unbiased, ``ddof=1``) covariance ``[D, D]`` of ``emb: [N, D]``."""
    emb = _check_embeddings(emb, "embeddings")
    mu = emb.mean(axis=0)
    sigma = np.atleast_2d(np.cov(emb, rowvar=False))
    return mu, sigma


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = DEFAULT_EPS) -> float:
    """Fréchet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    ``mu*: [D]``, ``sigma*: [D, D]``. The matrix square root uses :func:`scipy.linalg.sqrtm`;
    when the product is (near) singular and the root is not finite, ``eps * I`` is added to
    both covariances (the standard fallback of the FID/FAD reference code). Tiny imaginary
    parts that numerical error leaves in the root are discarded; large ones raise.
    """
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise InstructMEError(
            f"FAD: mismatched statistics (means {mu1.shape} vs {mu2.shape}, covariances "
            f"{sigma1.shape} vs {sigma2.shape})"
        )
    diff = mu1 - mu2
    covmean = _sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(d) * eps
        covmean = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        imag = np.max(np.abs(covmean.imag)) if covmean.size else 0.0
        scale = max(1.0, float(np.max(np.abs(covmean.real)))) if covmean.size else 1.0
        if imag > 1e-3 * scale:
            raise InstructMEError(f"FAD: matrix square root has a large imaginary part ({imag:g})")
        covmean = covmean.real
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))
    # Rounding can push the distance of (near) identical sets slightly below zero.
    return max(value, 0.0)


def fad(emb_a: np.ndarray, emb_b: np.ndarray, eps: float = DEFAULT_EPS) -> float:
    """FAD between two embedding sets ``emb_a: [Na, D]`` and ``emb_b: [Nb, D]`` (N >= 2 each)."""
    a = _check_embeddings(emb_a, "first embedding set")
    b = _check_embeddings(emb_b, "second embedding set")
    if a.shape[1] != b.shape[1]:
        raise InstructMEError(f"FAD: embedding sizes differ ({a.shape[1]} vs {b.shape[1]})")
    mu1, s1 = embedding_stats(a)
    mu2, s2 = embedding_stats(b)
    return frechet_distance(mu1, s1, mu2, s2, eps=eps)


def _sqrtm(m: np.ndarray) -> np.ndarray:
    # scipy >= 1.12 dropped the ``disp`` argument and warns instead of printing.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return scipy.linalg.sqrtm(m)
        except (ValueError, np.linalg.LinAlgError):
            return np.full_like(m, np.nan)


def _check_embeddings(emb: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(emb, dtype=np.float64)
    if arr.ndim != 2:
        raise InstructMEError(f"FAD: {what} must be a matrix [N, D], got shape {arr.shape}")
    if arr.shape[0] < 2:
        raise InstructMEError(f"FAD: {what} has {arr.shape[0]} vectors (at least 2 needed)")
    if not np.isfinite(arr).all():
        raise InstructMEError(f"FAD: {what} contains NaN or infinite values")
    return arr
