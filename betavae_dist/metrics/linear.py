"""A deterministic low-capacity classifier: multinomial logistic regression in torch.

Features are standardised with the training set's statistics; weights are fitted by full-batch
L-BFGS in float64 on one thread, so the result does not depend on the number of ranks or threads.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F


def fit_softmax(x: np.ndarray, y: np.ndarray, n_classes: int, l2: float = 1e-4, max_iter: int = 200):
    """Returns (predict, weights): predict maps features to class indices; weights is (d, n_classes)
    on standardised features."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        mean, std = x.mean(0), x.std(0)
        std[std < 1e-12] = 1.0  # constant features carry no information; keep them finite
        xs = torch.from_numpy((x - mean) / std).double()
        target = torch.from_numpy(np.asarray(y, np.int64))
        w = torch.zeros(x.shape[1], n_classes, dtype=torch.float64, requires_grad=True)
        b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
                                tolerance_grad=1e-9, tolerance_change=1e-12)

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(xs @ w + b, target) + l2 * w.square().sum()
            loss.backward()
            return loss

        opt.step(closure)
        w, b = w.detach(), b.detach()
    finally:
        torch.set_num_threads(threads)

    def predict(features: np.ndarray) -> np.ndarray:
        z = torch.from_numpy((features - mean) / std).double()
        return (z @ w + b).argmax(1).numpy()

    return predict, w.numpy()


def accuracy(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    return float((predict(x) == y).mean())
