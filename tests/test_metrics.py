"""Metrics on hand-computed cases, and conformal coverage on synthetic long-tailed scores."""

from __future__ import annotations

import numpy as np
import pytest

from workflow_scripts.evaluate.metrics import (
    calibrate,
    macro_accuracy,
    prediction_sets,
    set_report,
    top_k_hits,
    weighted_average,
    wilson,
)


def test_wilson_interval():
    assert wilson(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0)
    assert wilson(0, 0) == (0.0, 1.0)


def test_accuracies_and_the_weighted_average():
    ranked = np.array([[0, 1, 2], [1, 0, 2], [2, 1, 0], [1, 2, 0], [1, 0, 2]])
    labels = np.array([0, 0, 0, 1, 1])
    assert list(top_k_hits(ranked, labels, 1)) == [True, False, False, True, True]
    assert list(top_k_hits(ranked, labels, 2)) == [True, True, False, True, True]
    assert macro_accuracy(top_k_hits(ranked, labels, 1), labels) == pytest.approx((1 / 3 + 1) / 2)
    assert weighted_average(
        {"a": 0.5, "b": 1.0}, {"a": 10, "b": 30, "unused": 99}
    ) == pytest.approx(0.875)


def test_split_conformal_threshold_by_hand():
    true, labels = np.array([0.9, 0.8, 0.6, 0.3]), np.array([0, 1, 0, 1])
    assert list(calibrate(true, labels, 2, 0.25, "softmax")["thresholds"]) == [
        0.3,
        0.3,
    ]  # floor(0.25 * 5) = 1st
    assert list(calibrate(true, labels, 2, 0.45, "softmax")["thresholds"]) == [
        0.6,
        0.6,
    ]  # floor(0.45 * 5) = 2nd
    assert np.all(
        calibrate(true, labels, 2, 0.1, "softmax")["thresholds"] == -np.inf
    )  # too few points
    pas = calibrate(
        true, labels, 2, 0.45, "pas"
    )  # p(y) = 1/2 each: scores doubled, each point weighs 1/2
    assert list(pas["factors"]) == [2.0, 2.0] and list(pas["thresholds"]) == [1.2, 1.2]


def calibrated(
    probabilities: np.ndarray, labels: np.ndarray, alpha: float, method: str, weights=None
) -> dict:
    true = probabilities[np.arange(len(labels)), labels]
    return calibrate(true, labels, probabilities.shape[1], alpha, method, weights)


def report(probabilities: np.ndarray, labels: np.ndarray, calibration: dict, weights=None) -> dict:
    sets, classes = prediction_sets(probabilities, calibration), probabilities.shape[1]
    covered = np.bincount(labels, weights=sets[np.arange(len(labels)), labels], minlength=classes)
    return set_report(covered, np.bincount(labels, minlength=classes), int(sets.sum()), weights)


def long_tailed(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    prevalence = 1 / np.arange(1, 31) ** 1.5
    prevalence /= prevalence.sum()
    labels = rng.choice(30, size=n, p=prevalence)
    logits = (
        np.log(prevalence)[None, :] + 2.5 * np.eye(30)[labels] + rng.normal(0, 1.0, size=(n, 30))
    )
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return probabilities, labels


def test_conformal_coverage_marginal_and_macro_on_long_tailed_scores():
    calibration, test = long_tailed(20000, 0), long_tailed(20000, 1)
    reports = {
        method: report(*test, calibrated(*calibration, 0.1, method))
        for method in ("softmax", "class_conditional", "pas")
    }
    assert reports["softmax"]["coverage"] == pytest.approx(0.9, abs=0.015)
    assert reports["softmax"]["macro_coverage"] < 0.8  # rare classes under-covered
    assert reports["pas"]["macro_coverage"] == pytest.approx(0.9, abs=0.03)
    assert reports["class_conditional"]["macro_coverage"] >= 0.87
    assert reports["softmax"]["mean_set_size"] < reports["pas"]["mean_set_size"]


def test_weighted_pas_covers_the_weighted_classes():
    calibration, test = long_tailed(20000, 2), long_tailed(20000, 3)
    weights = np.ones(30)
    weights[20:] = 10.0  # the rarest classes matter most (e.g. endangered species)
    weights /= weights.sum()
    assert (
        report(*test, calibrated(*calibration, 0.1, "wpas", weights), weights)["macro_coverage"]
        >= 0.87
    )
