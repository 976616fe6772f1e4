"""scikit-learn's `GradientBoostingClassifier()` (DCI's classifier) grown again, compiled.

disentanglement_lib's DCI reads its importances off scikit-learn's gradient-boosted trees at their
defaults: the multinomial deviance (binomial for two classes), 100 stages of one depth-3
regression tree per class on the negative gradient, squared-error splits (`friedman_mse` picks the
same ones), one Newton step per leaf, learning rate 0.1; the importance of a feature is the squared
error its splits remove, summed over all trees and normalised. `fit` grows those trees: each feature
sorted once and kept sorted within each node as the node splits (scikit-learn sorts every node's
samples again, 99 % of its DCI time), one pass per feature and node for the split, and the trees of
a stage, which are independent, in parallel. Where two features split a node the same way, the
one met first wins, in a random order of the features as in scikit-learn (drawn here from the
stage, tree and node, so the same every run): the trees equal scikit-learn's for one of its
random states (tests/test_metric_dci.py), and DCI's scores agree within the spread of seeds
(docs/benchmarks.md).
"""

from __future__ import annotations

import numba
import numpy as np

FEATURE_THRESHOLD = 1e-7  # scikit-learn's: values closer than this are never split apart
EPSILON = np.finfo(np.float64).eps  # a node whose squared error is below this is a leaf
NODES = 15  # a heap of depth 3: node j's children are 2j + 1 and 2j + 2


@numba.njit(cache=True, nogil=True)
def _shuffled(n, key):
    """0..n-1 in an order drawn from the integer `key` (a splitmix64 stream, Fisher-Yates)."""
    order = np.arange(n)
    state = np.uint64(key)
    for i in range(n - 1, 0, -1):
        state += np.uint64(0x9E3779B97F4A7C15)
        z = (state ^ (state >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        j = int((z ^ (z >> np.uint64(31))) % np.uint64(i + 1))
        order[i], order[j] = order[j], order[i]
    return order


@numba.njit(cache=True, nogil=True)
def _best_splits(sorted_by, sorted_vals, r, inverse, f, g, s, e, total):
    """The best split of a node (samples s:e of the arrangement) along feature f and along feature g:
    (proxy, position) each, position -1 where all values are within FEATURE_THRESHOLD. The proxy is
    scikit-learn's: sum_left^2 / n_left + sum_right^2 / n_right; the first position wins a tie."""
    count = e - s
    a_best, a_p, b_best, b_p = -np.inf, -1, -np.inf, -1
    a_left, b_left = 0.0, 0.0
    a_after, b_after = np.float64(sorted_vals[f, s]), np.float64(sorted_vals[g, s])
    for p in range(s, e - 1):
        a_left += r[sorted_by[f, p]]
        b_left += r[sorted_by[g, p]]
        a_here, a_after = a_after, np.float64(sorted_vals[f, p + 1])
        b_here, b_after = b_after, np.float64(sorted_vals[g, p + 1])
        left_share, right_share = inverse[p - s + 1], inverse[count - (p - s + 1)]
        if a_after > a_here + FEATURE_THRESHOLD:
            a_right = total - a_left
            proxy = a_left * a_left * left_share + a_right * a_right * right_share
            if proxy > a_best:
                a_best, a_p = proxy, p
        if b_after > b_here + FEATURE_THRESHOLD:
            b_right = total - b_left
            proxy = b_left * b_left * left_share + b_right * b_right * right_share
            if proxy > b_best:
                b_best, b_p = proxy, p
    return a_best, a_p, b_best, b_p


@numba.njit(cache=True, nogil=True)
def _grow(xt, order, ordered, inverse, r, hess, newton, max_depth, key, features, thresholds, values, leaf_of, gain):
    """One regression tree on residuals r (n,) over features xt (features, n), the node values being
    Newton steps: newton * mean(r) / mean(hess) over the node's samples. Writes the nodes
    (features[j] = -1 at a leaf), each sample's leaf and each feature's removed squared error.
    order[f] lists the samples by feature f, ordered[f] their values in that order; inverse[m] = 1 / m:
    a product in the split search instead of two divisions (2x faster); `key` draws the order in which
    each node visits the features."""
    n_features, n = xt.shape
    idx = np.empty_like(order)  # idx[f, start:end]: a node's samples sorted by feature f
    vals = np.empty_like(ordered)  # their values, moved along: read in order, not gathered
    start, end = np.full(NODES, -1), np.full(NODES, -1)
    start[0], end[0] = 0, n
    goes_left, spare, spare_vals = np.zeros(n, np.bool_), np.empty(n, order.dtype), np.empty(n, ordered.dtype)
    features[:] = -1
    for j in range(NODES):
        if start[j] < 0:
            continue
        s, e, depth = start[j], end[j], int(np.log2(j + 1))
        sorted_by, sorted_vals = (order, ordered) if j == 0 else (idx, vals)  # the root reads the presorted features
        total, squares, h = 0.0, 0.0, 0.0
        for p in range(s, e):
            i = sorted_by[0, p]
            total += r[i]
            squares += r[i] * r[i]
            h += hess[i]
        count = e - s
        error = squares - total * total / count  # count times the node's squared-error impurity
        values[j] = 0.0 if abs(h / count) < 1e-150 else newton * (total / count) / (h / count)
        best, best_f, best_p = -np.inf, -1, -1
        if depth < max_depth and count >= 2 and error / count > EPSILON:
            # The features in a random order, as scikit-learn visits them: of two splits that tie
            # exactly (two features cutting the same samples off), the first one visited wins, so a
            # fixed order would credit the same feature every time. Two at a time: two running sums.
            visit = _shuffled(n_features, key * NODES + j)
            for q in range(0, n_features, 2):
                f, g = visit[q], visit[min(q + 1, n_features - 1)]
                a_best, a_p, b_best, b_p = _best_splits(sorted_by, sorted_vals, r, inverse, f, g, s, e, total)
                if a_best > best:
                    best, best_f, best_p = a_best, f, a_p
                if g != f and b_best > best:
                    best, best_f, best_p = b_best, g, b_p
        if best_f < 0:  # a leaf: too deep, too small, pure, or every feature constant here
            for p in range(s, e):
                leaf_of[sorted_by[0, p]] = j
            continue
        # scikit-learn's threshold: halfway, in float64, between the two float32 values
        here, after = np.float64(sorted_vals[best_f, best_p]), np.float64(sorted_vals[best_f, best_p + 1])
        threshold = here / 2.0 + after / 2.0
        if threshold == after or np.isinf(threshold):
            threshold = here
        features[j], thresholds[j] = best_f, threshold
        for p in range(s, e):
            i = sorted_by[best_f, p]
            goes_left[i] = xt[best_f, i] <= threshold
        # A stable partition keeps both halves sorted; leaves need only one feature's order.
        for f in range(n_features if depth + 1 < max_depth else 1):
            lo, hi = s, 0
            for p in range(s, e):  # both writes, no branch: which side a sample goes is a coin toss to the CPU
                i, v = sorted_by[f, p], sorted_vals[f, p]
                go = goes_left[i]
                idx[f, lo], vals[f, lo], spare[hi], spare_vals[hi] = i, v, i, v
                lo += go
                hi += 1 - go
            idx[f, lo:e], vals[f, lo:e] = spare[:hi], spare_vals[:hi]
        middle = best_p + 1
        child_error = 0.0
        for a, b in ((s, middle), (middle, e)):
            t, q = 0.0, 0.0
            for p in range(a, b):
                t += r[idx[0, p]]
                q += r[idx[0, p]] * r[idx[0, p]]
            child_error += q - t * t / (b - a)
        gain[best_f] += error - child_error
        start[2 * j + 1], end[2 * j + 1] = s, middle
        start[2 * j + 2], end[2 * j + 2] = middle, e


@numba.njit(cache=True, nogil=True)
def _apply(xt, features, thresholds, values, out, rate):
    """out[i] += rate * the tree's value at sample i's leaf."""
    for i in range(xt.shape[1]):
        j = 0
        while features[j] >= 0:
            j = 2 * j + 1 if np.float64(xt[features[j], i]) <= thresholds[j] else 2 * j + 2
        out[i] += rate * values[j]


def _stage(xt, order, ordered, inverse, residuals, hess, newton, max_depth, rate, raw, test_xt, test_raw, gain, stage):
    """One boosting stage: a tree per column of residuals, each added to its column of raw and
    test_raw (the trees are independent, so the stage's result does not depend on the threads)."""
    for k in numba.prange(residuals.shape[0]):
        features, thresholds, values = np.empty(NODES, np.int64), np.zeros(NODES), np.zeros(NODES)
        leaf_of = np.empty(xt.shape[1], np.int64)
        _grow(xt, order, ordered, inverse, residuals[k], hess[k], newton, max_depth, stage * residuals.shape[0] + k, features,
              thresholds, values, leaf_of, gain[k])
        for i in range(xt.shape[1]):
            raw[k, i] += rate * values[leaf_of[i]]
        _apply(test_xt, features, thresholds, values, test_raw[k], rate)


# The trees of a stage on numba's threads, or on the calling thread alone: the serial kernel never
# enters numba's thread pool, so several Python threads may run it at once (fits.py's pool).
_parallel_stage = numba.njit(cache=True, parallel=True)(_stage)
_serial_stage = numba.njit(cache=True, nogil=True)(_stage)


def _softmax(raw: np.ndarray) -> np.ndarray:
    e = np.exp(raw - raw.max(0))
    return e / e.sum(0)


def fit(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, threads: int = 1,
        stages: int = 100, rate: float = 0.1, max_depth: int = 3) -> tuple[np.ndarray, float, float]:
    """GradientBoostingClassifier() fitted on (x_train, y_train) with `threads` threads: its feature
    importances (summing to 1, or all zeros when no tree splits), its accuracy on the training and
    on the test samples."""
    assert max_depth <= 3, "the node heap holds depth 3"
    threads = min(threads, numba.config.NUMBA_NUM_THREADS)
    if threads > 1:
        numba.set_num_threads(threads)
    stage_trees = _parallel_stage if threads > 1 else _serial_stage
    classes, y = np.unique(y_train, return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"gradient boosting needs 2 or more classes; the training labels hold {len(classes)}")
    xt = np.ascontiguousarray(x_train.astype(np.float32).T)  # scikit-learn's trees see float32
    test_xt = np.ascontiguousarray(x_test.astype(np.float32).T)
    order = np.argsort(xt, axis=1, kind="stable").astype(np.int32)
    ordered = np.take_along_axis(xt, order, 1)
    eps = np.finfo(np.float64).eps
    prior = np.clip(np.bincount(y) / len(y), eps, 1 - eps)
    binary = len(classes) == 2
    if binary:  # one tree per stage on the log-odds of the second class
        targets = (y == 1)[None].astype(np.float64)
        init = np.log(prior[1:] / (1 - prior[1:]))
        newton = 1.0
    else:
        targets = (y[None] == np.arange(len(classes))[:, None]).astype(np.float64)
        init = np.log(prior) - np.log(prior).mean()
        newton = (len(classes) - 1) / len(classes)
    raw = np.repeat(init[:, None], len(y), 1)  # (trees per stage, samples)
    test_raw = np.repeat(init[:, None], x_test.shape[0], 1)
    gain = np.zeros((stages, len(init), xt.shape[0]))
    inverse = 1.0 / np.maximum(np.arange(len(y) + 1), 1)
    for stage in range(stages):
        p = 1 / (1 + np.exp(-raw)) if binary else _softmax(raw)
        stage_trees(xt, order, ordered, inverse, targets - p, p * (1 - p), newton, max_depth, rate, raw, test_xt, test_raw,
                    gain[stage], stage)
    importance = gain.sum((0, 1))
    importance = importance / importance.sum() if importance.sum() > 0 else importance

    def predict(r: np.ndarray) -> np.ndarray:
        return classes[(r[0] > 0).astype(int)] if binary else classes[r.argmax(0)]

    return importance, float((predict(raw) == y_train).mean()), float((predict(test_raw) == y_test).mean())
