"""Helpers shared by the training-equivalence test and the scripts that made its fixtures (outside the project).

Large networks' fixtures stay small: the weights before the step are a formula of each tensor's name list index
(:func:`fixed_weights`), and gradients and weights after the step are kept as ``K`` Gaussian projections per
tensor plus the tensor's norm (:func:`project`). The norm of a difference is estimated from its projections
(Johnson-Lindenstrauss): ``||d||^2 ~ mean_k (r_k . d)^2``, within about 35 % for ``K = 16`` at 95 %.
"""

from __future__ import annotations

import numpy as np

K = 16


def fixed_weights(names: list[str], shapes: list[tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Deterministic float32 weights of a network's scale: convolution and linear weights uniform in
    +-1/sqrt(fan_in) (PyTorch's default bound), norm weights, temperatures and scales 1 +- 0.1, biases +-0.1."""
    out = {}
    for i, (name, shape) in enumerate(zip(names, shapes, strict=True)):
        u = np.random.default_rng([2026, i]).uniform(-1.0, 1.0, shape)
        if len(shape) == 4 or (len(shape) == 2 and "scale" not in name):
            w = u / np.sqrt(np.prod(shape[1:]))
        elif name.endswith("bias"):
            w = 0.1 * u
        else:  # LayerNorm weights, attention temperatures and scales: around one
            w = 1.0 + 0.1 * u
        out[name] = w.astype(np.float32)
    return out


def project(i: int, t: np.ndarray) -> np.ndarray:
    """(K,) float64 projections of tensor number ``i`` on K fixed standard Gaussian vectors."""
    flat = np.asarray(t, np.float64).ravel()
    return np.random.default_rng([7, i]).standard_normal((K, flat.size)) @ flat


def rel_from_projections(p_ours: np.ndarray, p_ref: np.ndarray, norm_ref: float) -> float:
    """Estimated ||ours - ref|| / ||ref|| from both tensors' projections and the reference's norm."""
    return float(np.sqrt(np.mean((p_ours - p_ref) ** 2)) / max(norm_ref, 1e-30))
