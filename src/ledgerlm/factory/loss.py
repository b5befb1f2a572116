"""The training objective: next-token cross-entropy on the labelled tokens of packed blocks.

Training, evaluation and attribution all score tokens through `token_losses`, so the number a
user sees in the progress bar, the held-out loss and the per-example influence all measure the same
thing. Only labelled positions go through the output head: for instruction data most tokens are
prompt, and the vocabulary projection is a large share of a small model's compute. A batch whose
rows continue one shared prefix (`dataset.share_prefix`) runs that prefix once and lets every row
attend to its keys and values, with gradients flowing back through them: the same losses as
repeating it in every row. A caller that wants no gradient at the prefix's own positions (attribution,
whose features leave the chat template's head out) passes `frozen_prefixes`: the prefix then runs
without autograd, once for every batch that shares it, and backward stops at the rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ledgerlm.factory.dataset import IGNORE, PackedBatch

if TYPE_CHECKING:
    import torch

# Models whose head is not a plain projection of the last hidden state (soft-capped or rescaled
# logits) take the full forward pass instead.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


def causal_lm_of(model):
    """The transformers causal LM inside a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def token_losses(model, batch: PackedBatch, *, loss_on_cpu: bool = False,
                 frozen_prefixes: dict | None = None) -> torch.Tensor:
    """Loss of every labelled token given the tokens before it in its own example, shape (n,).

    Order is row-major over the batch's target positions `labels[:, 1:] != IGNORE`. With
    `loss_on_cpu` the cross-entropy runs on CPU (the losses come back there; gradients flow back
    to the device): CUDA's negative log-likelihood has no deterministic kernel.

    With `frozen_prefixes` (a dict the caller keeps while the model's weights stay as they are) a
    shared prefix runs without autograd and its keys and values are kept there for the next batch
    that shares it. The losses and every gradient at the rows' positions are the same: a gradient
    never flows from a later position into an earlier one; the prefix's own positions get none.
    """
    import torch
    import torch.nn.functional as F

    targets = batch.labels[:, 1:]
    keep = targets != IGNORE
    lm = causal_lm_of(model)
    trunk = _trunk(lm)
    body = trunk if trunk is not None else lm
    # attention_mask stays None: transformers then reads example boundaries from the restarting
    # position ids and masks attention block-diagonally.
    inputs = {"input_ids": batch.input_ids, "position_ids": batch.position_ids, "use_cache": False}
    if batch.prefix_ids is not None:
        inputs |= _prefix_cache(body, lm.config, batch.prefix_ids, len(batch.input_ids),
                                frozen_prefixes)
    out = body(**inputs)
    if trunk is not None:
        logits = lm.get_output_embeddings()(out.last_hidden_state[:, :-1][keep])
    else:
        logits = out.logits[:, :-1][keep]
    targets = targets[keep]
    if loss_on_cpu:
        logits, targets = logits.cpu(), targets.cpu()
    # float32 at least (a half-precision head's logits lose the loss), float64 kept as it is
    logits = logits if logits.dtype == torch.float64 else logits.float()
    return F.cross_entropy(logits, targets, reduction="none")


def _prefix_cache(body, config, prefix_ids: torch.Tensor, rows: int,
                  frozen: dict | None = None) -> dict:
    """Keyword arguments that let `rows` rows continue `prefix_ids`, run once with its graph kept,
    or, with `frozen`, run without autograd once for all batches (`token_losses`)."""
    import copy
    import inspect
    from contextlib import nullcontext

    import torch
    from transformers import DynamicCache

    # transformers 5 names the argument `cache`; earlier releases `past_key_values`.
    name = "cache" if "cache" in inspect.signature(body.forward).parameters else "past_key_values"
    key = (tuple(prefix_ids.tolist()), str(prefix_ids.device))
    if frozen is not None and key in frozen:
        cache = copy.deepcopy(frozen[key])  # the rows' pass appends its own keys to its copy
    else:
        cache = DynamicCache(config=config)
        with torch.no_grad() if frozen is not None else nullcontext():
            body(input_ids=prefix_ids[None], use_cache=True, **{name: cache})
        if frozen is not None:
            frozen[key] = copy.deepcopy(cache)
    # Gradients of every row flow back through the repeated keys and values into the one prefix
    # pass, unless it is frozen.
    cache.batch_repeat_interleave(rows)
    return {name: cache, "use_cache": True}


def token_owners(batch: PackedBatch) -> torch.Tensor:
    """The record index of each entry of `token_losses(model, batch)`."""
    keep = batch.labels[:, 1:] != IGNORE
    return batch.example_index[:, 1:][keep]


def example_losses(model, batch: PackedBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """(record indices, mean token loss of each) for the examples with labelled tokens in `batch`.

    Keeps the autograd graph, so `example_losses(...)[1].sum().backward()` gives every example's
    own gradient inside one batched pass (examples in a block do not attend to each other).
    """
    import torch

    losses = token_losses(model, batch)
    owners = token_owners(batch)
    examples, slot = torch.unique(owners, return_inverse=True)
    totals = torch.zeros(len(examples), dtype=losses.dtype, device=losses.device)
    totals = totals.index_add(0, slot, losses)
    counts = torch.bincount(slot, minlength=len(examples)).to(losses.dtype)
    return examples, totals / counts


def _trunk(lm):
    config = lm.config
    if any(getattr(config, name, None) not in (None, 1, 1.0) for name in _LOGIT_TRANSFORMS):
        return None
    if lm.get_output_embeddings() is None:
        return None
    trunk = getattr(lm, getattr(lm, "base_model_prefix", ""), None)
    return trunk if trunk is not None and trunk is not lm else None
