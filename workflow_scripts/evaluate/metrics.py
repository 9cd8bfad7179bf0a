"""Evaluation metrics: accuracy with Wilson intervals, the paper's class-weighted average, and
conformal prediction sets for long-tailed labels (the Pl@ntNet seed: Ding, Fermanian & Salmon).

Conformal sets keep every class whose score is at least a threshold calibrated on held-out
(probabilities, label) pairs:
- `softmax`: score p(y|x), one threshold: marginal coverage >= 1 - alpha;
- `class_conditional`: score p(y|x), one threshold per class from that class's points;
- `pas`: Prevalence-Adjusted Softmax p(y|x) / p(y), calibrated with each point weighted by
  1 / (its class's calibration count): macro-coverage (the mean over classes) >= 1 - alpha;
- `wpas`: weighted PAS w(y) p(y|x) / p(y), points weighted by w(y) / (class count): w-weighted
  macro-coverage.
"""

from __future__ import annotations

import math

import numpy as np

Z_95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default); (0, 1) for no trials."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = (
        z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    )
    return max(0.0, centre - half), min(1.0, centre + half)


def top_k_hits(ranked: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per example, whether its label is among the first k of its ranked class ids."""
    return (ranked[:, :k] == labels[:, None]).any(axis=1)


def macro_accuracy(hits: np.ndarray, labels: np.ndarray) -> float:
    """Mean over the classes present of each class's accuracy."""
    classes, inverse = np.unique(labels, return_inverse=True)
    return (
        float(np.mean(np.bincount(inverse, weights=hits) / np.bincount(inverse)))
        if len(classes)
        else 0.0
    )


def weighted_average(accuracy: dict[str, float], classes: dict[str, int]) -> float:
    """The paper's average across benchmarks, each weighted by its number of class labels."""
    total = sum(classes[name] for name in accuracy)
    return sum(accuracy[name] * classes[name] for name in accuracy) / total


def _lower_quantile(scores: np.ndarray, weights: np.ndarray, alpha: float) -> float:
    """The threshold t = s_(k), the k-th smallest calibration score, for the largest k whose
    weighted share s_(1..k) of all points and the test point (weighted as the heaviest) is at most
    alpha: a test score falls below t with probability at most alpha. Unweighted, k = floor(alpha
    (n + 1)), split conformal's quantile; -inf (every class kept) when no k qualifies."""
    order = np.argsort(scores, kind="stable")
    scores, weights = scores[order], weights[order] / (weights.sum() + weights.max())
    allowed = np.flatnonzero(np.cumsum(weights) <= alpha + 1e-12)
    return float(scores[allowed[-1]]) if len(allowed) else -np.inf


def score_factors(method: str, prevalence: np.ndarray, class_weights: np.ndarray) -> np.ndarray:
    """Per class, the factor that turns p(y|x) into the method's score s(x, y): 1, 1 / p(y) (PAS),
    or w(y) / p(y) (weighted PAS)."""
    if method in ("softmax", "class_conditional"):
        return np.ones(len(prevalence))
    return (class_weights if method == "wpas" else 1.0) / prevalence


def calibrate(
    true_probabilities: np.ndarray,
    labels: np.ndarray,
    classes: int,
    alpha: float,
    method: str,
    class_weights: np.ndarray | None = None,
) -> dict:
    """Thresholds (one, or one per class) from the calibration points' p(y|x) of their own label;
    the prevalence p(y) is estimated on the same points."""
    counts = np.bincount(labels, minlength=classes)
    weights = class_weights if class_weights is not None else np.full(classes, 1 / classes)
    factors = score_factors(method, np.maximum(counts, 1) / len(labels), weights)
    true = true_probabilities * factors[labels]
    if method == "class_conditional":
        thresholds = np.array(
            [
                _lower_quantile(true[labels == y], np.ones(counts[y]), alpha)
                if counts[y]
                else -np.inf
                for y in range(classes)
            ]
        )
    else:
        point_weights = (
            np.ones(len(labels)) if method == "softmax" else weights[labels] / counts[labels]
        )
        thresholds = np.full(classes, _lower_quantile(true, point_weights, alpha))
    return {"method": method, "thresholds": thresholds, "factors": factors}


def prediction_sets(probabilities: np.ndarray, calibration: dict) -> np.ndarray:
    """Boolean (examples x classes): the classes in each example's set."""
    return probabilities * calibration["factors"][None, :] >= calibration["thresholds"][None, :]


def set_report(
    covered: np.ndarray, counts: np.ndarray, sizes: int, class_weights: np.ndarray | None = None
) -> dict:
    """Coverage, macro-coverage over the classes present (weighted when class weights are given)
    and mean set size, from per class the test examples covered (their label in their set) and
    the examples (`counts`), and the sum of their set sizes."""
    present = np.flatnonzero(counts)
    per_class = covered[present] / counts[present]
    weights = (
        np.full(len(present), 1 / len(present))
        if class_weights is None
        else (class_weights[present] / class_weights[present].sum())
    )
    return {
        "coverage": float(covered.sum() / counts.sum()),
        "macro_coverage": float(per_class @ weights),
        "mean_set_size": float(sizes / counts.sum()),
    }
