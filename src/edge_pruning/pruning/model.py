"""The model a run prunes (and its reference): loaded in fp32 with frozen weights,
its masks and λs reset as the original did."""

from __future__ import annotations

import os

import torch
from transformers import set_seed

from .. import l0
from ..models import load_model
from .args import PruningArguments, hub_kwargs


def load_for_pruning(arch: str, path: str, pargs: PruningArguments, bf16: bool):
    """A circuit model to prune or to serve as the reference, and the names of the mask
    parameters its checkpoint lacked: fp32 whatever the checkpoint's dtype, so that
    masks start from an fp32 N(10, 0.01); with --bf16 the frozen weights (and so the
    activations) are bf16, the masks stay fp32. `--ungroup_kv` is passed only when
    given: an explicit False would override the graph a pruned checkpoint records."""
    model, info = load_model(
        arch, path, with_embedding_nodes=pargs.with_embedding_nodes, dtype=torch.float32,
        ignore_mismatched_sizes=pargs.ignore_mismatched_sizes, output_loading_info=True, **hub_kwargs(pargs),
        **({"ungroup_kv": True} if pargs.ungroup_kv else {}),
    )  # fmt: skip
    if bf16:
        model.to(torch.bfloat16)
        model.circuit_masks.float()
    model.freeze_model_weights()
    return model, missing_mask_names(info)


def missing_mask_names(info: dict) -> set[str]:
    """Names (under circuit_masks) of the mask parameters a checkpoint lacked."""
    marker = "circuit_masks."
    return {k.split(marker, 1)[1] for k in info.get("missing_keys", ()) if marker in k}


def prepare_masks(model, pargs: PruningArguments, seed: int, missing: set[str] | None = None) -> None:
    """Before training: reset the masks as the original did (log_alpha ~ N(10, 0.01),
    λ = 0), unless --keep_masks, which resets only those the checkpoint lacked
    (`missing`: parameter names under `circuit_masks`, None for all). Drawn right after
    re-seeding and in a fixed order, so that they do not depend on what or in which
    order the loader drew (it initialises missing keys in set order, which varies with
    the process's string hashing). Then the penalty's sparsity, and λ1 off without the
    linear term. Call after `freeze_model_weights`."""
    masks = model.circuit_masks
    reset = None if not pargs.keep_masks else (missing if missing is not None else set())
    masks.mask_sampler = pargs.mask_sampler  # UGS starts its masks elsewhere (l0.MaskSampler)
    set_seed(seed)
    with torch.no_grad():
        for name in ("edge_log_alphas", "node_log_alphas"):
            if reset is None or name in reset:
                getattr(masks, name).normal_(masks.mask_sampler.init_mean, l0.INIT_STD)
        for name, lam in masks.named_parameters():
            if name.startswith("sparsity_lambda") and (reset is None or name in reset):
                lam.zero_()
    masks.sparsity_penalty = pargs.sparsity_penalty
    if pargs.disable_linear_reg_term:
        with torch.no_grad():
            for lam in (masks.sparsity_lambda_edges_1, masks.sparsity_lambda_nodes_1):
                lam.zero_()
                lam.requires_grad_(False)


def same_checkpoint(a: str | None, b: str | None) -> bool:
    """Whether two checkpoint names are one (None: the default, the same one)."""
    if a is None or b is None:
        return True
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return a.rstrip("/") == b.rstrip("/")
