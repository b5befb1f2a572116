"""K-FAC preconditioning of the index's gradient features, folded into the projection.

The gradient of one LoRA weight is sum_t g_t x_t^T (output gradient times input activation), and
K-FAC (Martens & Grosse, 2015) approximates that weight's block of the Gauss-Newton / Fisher
matrix by a Kronecker product A (x) G, with A = E[x x^T] and G = E[g g^T] over the training
tokens. Kronfluence (Grosse et al., 2023, "Studying large language model generalization with
influence functions") and LoGra (Choe et al., 2024) precondition influence with these per-layer
factors; LoGra fits them on the projected activations and output gradients. Here the
preconditioner is folded into the projection instead: (A (x) G)^{-1/2} applied to
sum_t g_t x_t^T is sum_t (G^{-1/2} g_t)(A^{-1/2} x_t)^T, so a projector whose matrices are
P_in A^{-1/2} and P_out G^{-1/2} gives features whose plain cosine is the K-FAC-preconditioned
cosine, in the index's exact and sketch layouts alike. The whitened matrices are stored with the
index like any projection, so answers are projected, and receipts recomputed, with exactly them.

Each factor is damped by `damping` x its mean eigenvalue, as the index damps its covariance.
Whether it attributes better than the plain projection is measured on the evaluation's tuning
split (`ledgerlm.evals.attribution`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ledgerlm.attribution.features import (
    LoraProjector,
    backward_to_lora,
    feature_batches,
    feature_slots,
    lora_gradients_enabled,
)


@dataclass(frozen=True)
class KroneckerFactors:
    """Per LoRA weight: E[x x^T] of its inputs and E[g g^T] of its output gradients (float64)."""

    activations: dict[str, np.ndarray]
    gradients: dict[str, np.ndarray]
    tokens: int


def kronecker_factors(model, examples: list, head: tuple[int, ...], *, max_len: int, pad_id: int,
                      batch_size: int = 8) -> KroneckerFactors:
    """K-FAC factors of every LoRA weight over the tokens of `examples`, in one pass.

    The tokens are those a feature counts: after the template head, no padding. The output
    gradients are those of the examples' summed token loss (the empirical Fisher).
    """
    import torch

    from ledgerlm.factory import on_lora_backward, token_losses

    sums_x: dict[str, torch.Tensor] = {}
    sums_g: dict[str, torch.Tensor] = {}
    counted = 0
    device = next(model.parameters()).device
    with lora_gradients_enabled(model) as params:
        for batch in feature_batches(examples, head, max_len, pad_id, batch_size):
            slots, _ = feature_slots(batch, head)
            shape = tuple(slots.shape)
            keep = (slots.flatten() >= 0).to(device)
            batch = batch.to(device)

            def receive(param: str, x, grad, keep=keep, shape=shape) -> None:
                if tuple(x.shape[:2]) != shape:  # the shared head's own pass: not counted
                    return
                xs = x.reshape(-1, x.shape[-1])[keep].double()
                gs = grad.reshape(-1, grad.shape[-1])[keep].double()
                sums_x[param] = sums_x.get(param, 0) + (xs.T @ xs).cpu()
                sums_g[param] = sums_g.get(param, 0) + (gs.T @ gs).cpu()

            with on_lora_backward(model, receive), torch.enable_grad():
                backward_to_lora(token_losses(model, batch).sum(), params)
            counted += int(keep.sum())
    n = max(counted, 1)
    return KroneckerFactors({k: (v / n).numpy() for k, v in sums_x.items()},
                            {k: (v / n).numpy() for k, v in sums_g.items()}, counted)


def damped_inverse_sqrt(matrix: np.ndarray, damping: float) -> np.ndarray:
    """(M + lambda I)^{-1/2}, lambda = damping x M's mean eigenvalue."""
    values, vectors = np.linalg.eigh(np.asarray(matrix, dtype=np.float64))
    values = np.maximum(values, 0.0)
    lam = damping * float(values.mean()) or damping
    return (vectors / np.sqrt(values + lam)) @ vectors.T


def kfac_projector(projector: LoraProjector, factors: KroneckerFactors,
                   damping: float) -> LoraProjector:
    """The same projection with both sides of every weight whitened by its K-FAC factors."""
    weights = {}
    for m in projector.matrices:
        for side, factor in (("in", factors.activations[m.name]),
                             ("out", factors.gradients[m.name])):
            whiten = damped_inverse_sqrt(factor, damping)
            given = projector.dense(m.name, side)
            weights[f"{m.name}|{side}"] = (whiten if given is None
                                           else given @ whiten).astype(np.float32)
    return LoraProjector(projector.matrices, weights, projector.dim, projector.layout,
                         projector.head)
