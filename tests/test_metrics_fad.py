"""FAD: identical sets, closed forms for Gaussians, singular covariances, errors."""

from __future__ import annotations

import numpy as np
import pytest

from instructme.errors import InstructMEError
from instructme.metrics.fad import embedding_stats, fad, frechet_distance


def test_identical_sets_give_zero():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(200, 16))
    assert fad(emb, emb) == pytest.approx(0.0, abs=1e-6)


def test_closed_form_isotropic_gaussians():
    # N(mu1, a^2 I) vs N(mu2, b^2 I): ||mu1 - mu2||^2 + D (a - b)^2
    d, a, b = 8, 1.5, 0.5
    mu1, mu2 = np.zeros(d), np.full(d, 0.25)
    expected = d * 0.25**2 + d * (a - b) ** 2
    got = frechet_distance(mu1, a**2 * np.eye(d), mu2, b**2 * np.eye(d))
    assert got == pytest.approx(expected, rel=1e-9)


def test_closed_form_non_commuting_covariances():
    # Covariances that do not commute: compare with an eigen-decomposition reference.
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    s1, s2 = a @ a.T + np.eye(5), b @ b.T + np.eye(5)
    w, v = np.linalg.eigh(s1)
    r1 = v @ np.diag(np.sqrt(w)) @ v.T  # s1^(1/2)
    w2 = np.linalg.eigvalsh(r1 @ s2 @ r1)
    expected = np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(w2, 0, None)).sum()
    assert frechet_distance(np.zeros(5), s1, np.zeros(5), s2) == pytest.approx(expected, rel=1e-7)


def test_sampled_shifted_gaussian_matches_shift():
    rng = np.random.default_rng(2)
    shift = np.array([1.0, -2.0, 0.0, 0.5])
    a = rng.normal(size=(20000, 4))
    b = rng.normal(size=(20000, 4)) + shift
    assert fad(a, b) == pytest.approx(float(shift @ shift), abs=0.05)


def test_stats_shapes_and_unbiased_covariance():
    emb = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    mu, sigma = embedding_stats(emb)
    assert mu.tolist() == [2.0, 3.0]
    assert sigma == pytest.approx(np.full((2, 2), 4.0))


def test_singular_covariances_are_finite():
    # Fewer vectors than dimensions: rank-deficient covariances take the eps fallback.
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(5, 32)), rng.normal(size=(6, 32)) + 1.0
    value = fad(a, b)
    assert np.isfinite(value) and value > 0


@pytest.mark.parametrize("a,b", [
    (np.zeros((1, 3)), np.zeros((4, 3))),            # too few vectors
    (np.zeros((4, 3)), np.zeros((4, 2))),            # dimension mismatch
    (np.zeros(4), np.zeros((4, 1))),                 # not a matrix
    (np.full((4, 3), np.nan), np.zeros((4, 3))),     # NaN
])
def test_bad_inputs_raise_one_line_errors(a, b):
    with pytest.raises(InstructMEError) as e:
        fad(a, b)
    assert "\n" not in str(e.value)
