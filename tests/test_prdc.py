"""PRDC against the reference `prdc` package (Naeem et al.) and a hand-computed toy case."""

from __future__ import annotations

import numpy as np
import pytest
from prdc import compute_prdc as reference_prdc

import echoaudit.audit.prdc as prdc_module
from echoaudit.audit.prdc import compute_prdc

KEYS = ("precision", "recall", "density", "coverage")


@pytest.mark.parametrize("nearest_k", [1, 3, 5, 10])
@pytest.mark.parametrize(("n_real", "n_fake", "dim", "shift"), [(120, 90, 8, 0.0), (80, 150, 16, 0.7), (60, 60, 2, 0.3)])
def test_matches_reference_package(nearest_k, n_real, n_fake, dim, shift, capsys):
    rng = np.random.default_rng(nearest_k * 1000 + n_real)
    real = rng.normal(size=(n_real, dim)).astype(np.float32)
    # A shifted, narrower fake set so the four numbers differ from each other and from 1.
    fake = (rng.normal(size=(n_fake, dim)) * 0.8 + shift).astype(np.float32)
    ours = compute_prdc(real, fake, nearest_k)
    ref = reference_prdc(real, fake, nearest_k)
    capsys.readouterr()  # the reference prints sample counts
    for key in KEYS:
        assert ours[key] == pytest.approx(float(ref[key]), abs=1e-12), key
        assert type(ours[key]) is float


def test_hand_computed_one_dimensional_case():
    # Real at 0, 1, 2, 10 -> 1-NN radii 1, 1, 1, 8 (balls are open). Fake at 0.5, 9, 20 ->
    # 1-NN radii 8.5, 8.5, 11.
    real = np.array([[0.0], [1.0], [2.0], [10.0]])
    fake = np.array([[0.5], [9.0], [20.0]])
    out = compute_prdc(real, fake, nearest_k=1)
    # 0.5 lies in the balls of 0 and 1; 9 in the ball of 10; 20 in none.
    assert out["precision"] == pytest.approx(2 / 3)
    assert out["density"] == pytest.approx((2 + 1 + 0) / (1 * 3))
    # Every real point lies within 8.5 of 0.5 or of 9.
    assert out["recall"] == pytest.approx(1.0)
    # Nearest fakes: 0.5, 0.5, 1.5 (vs radius 1 -> no), 1 (vs radius 8 -> yes).
    assert out["coverage"] == pytest.approx(3 / 4)


def test_identical_sets_and_far_fakes():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(50, 4))
    far = compute_prdc(real, real + 100.0, nearest_k=3)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    same = compute_prdc(real, real.copy(), nearest_k=3)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0


def test_blocked_computation_equals_one_block(monkeypatch):
    rng = np.random.default_rng(4)
    real = rng.normal(size=(70, 5))
    fake = rng.normal(size=(45, 5)) + 0.2
    whole = compute_prdc(real, fake, nearest_k=4)
    monkeypatch.setattr(prdc_module, "_BLOCK_VALUES", 100)  # blocks of 1-2 rows
    assert compute_prdc(real, fake, nearest_k=4) == whole


@pytest.mark.parametrize(
    ("real", "fake", "k", "message"),
    [
        (np.zeros(5), np.zeros((5, 2)), 1, r"real_features must be a 2-D array \(samples, feature_dim\), got shape \(5,\)"),
        (np.zeros((5, 2)), np.zeros((5, 3)), 1, r"need the same feature_dim, got 2 and 3"),
        (np.zeros((5, 2)), np.full((5, 2), np.nan), 1, r"fake_features must be finite, got 10 NaN/inf values"),
        (np.zeros((5, 2)), np.zeros((4, 2)), 4, r"nearest_k must be in \[1, min\(N, M\) - 1\] = \[1, 3\] .* got 4"),
        (np.zeros((5, 2)), np.zeros((5, 2)), 0, r"nearest_k must be in \[1, min\(N, M\) - 1\] = \[1, 4\]"),
        (np.zeros((5, 2)), np.zeros((5, 2)), 2.0, r"nearest_k must be an integer, got 2.0"),
        (np.array([["a", "b"]]), np.zeros((5, 2)), 1, r"real_features must hold real numbers, got dtype <U1"),
    ],
)
def test_argument_errors(real, fake, k, message):
    with pytest.raises(ValueError, match=message):
        compute_prdc(real, fake, k)
