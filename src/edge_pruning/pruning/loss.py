"""One pruning step's loss (method.md §4), the optimizer of masks and λs, and the
statistics each logged step records."""

from __future__ import annotations

import torch

from ..evaluation import corrupted_states, model_logits
from ..tasks import Batch, Task
from .cache import FixedPasses


def mask_optimizer(
    masks,
    edge_lr: float,
    node_lr: float,
    reg_edge_lr: float,
    reg_node_lr: float,
    weight_decay: float,
    linear_term: bool = True,
):
    """AdamW over the four groups; the λ groups maximise (method.md §4). Without the
    linear term, λ1 of edges and nodes is no parameter of the optimizer (it stays 0)."""
    lam_edges = [masks.sparsity_lambda_edges_1, masks.sparsity_lambda_edges_2]
    lam_nodes = [masks.sparsity_lambda_nodes_1, masks.sparsity_lambda_nodes_2]
    if not linear_term:
        lam_edges, lam_nodes = lam_edges[1:], lam_nodes[1:]
    groups = [
        {"params": [masks.edge_log_alphas], "lr": edge_lr},
        {"params": [masks.node_log_alphas], "lr": node_lr},
        {"params": lam_edges, "lr": reg_edge_lr, "maximize": True},
        {"params": lam_nodes, "lr": reg_node_lr, "maximize": True},
    ]
    return torch.optim.AdamW(groups, lr=edge_lr, weight_decay=weight_decay)


def pruning_loss(
    model,
    task: Task,
    batch: Batch,
    target_edge: float,
    target_node: float | None,
    ablation: str = "interchange",
    mean_states: torch.Tensor | None = None,
    reference=None,
    skip_node_loss_above_target: bool = False,
    fixed: FixedPasses | None = None,
):
    """One step's loss: KL(full || circuit) at the task's positions plus the
    Lagrangian terms. The full model's logits and the corrupted states come from
    `fixed` when given (the batch's rows of the cached passes), else from `reference`
    when given (--ref_initialize_from), else from the model's own frozen weights.
    Returns (loss, kl, model output)."""
    full_model = model if reference is None else reference
    if fixed is not None:
        full = fixed.full_logits
        corr_x = fixed.corr_x if fixed.corr_x is not None else corrupted_states(full_model, batch, ablation, mean_states)
    else:
        with torch.no_grad():
            full = model_logits(full_model, batch, circuit=False)
        corr_x = corrupted_states(full_model, batch, ablation, mean_states)
    out = model(
        batch.input_ids,
        attention_mask=batch.attention_mask,
        output_positions=batch.positions,
        corr_x=corr_x,
        target_edge_sparsity=target_edge,
        target_node_sparsity=target_node,
    )
    kl = task.loss(out.logits, full, batch)
    loss = kl + out.edge_loss
    if out.node_loss is not None:
        # --stop_optimizing_node_if_higher_sparsity: the original drops the node term
        # in any step whose node sparsity is already above its target.
        above = skip_node_loss_above_target and out.model_node_sparsity.item() > target_node
        if not above:
            loss = loss + out.node_loss
    return loss, kl, out


def _value(x) -> float | None:
    if x is None:
        return None
    return x.item() if torch.is_tensor(x) else float(x)


def step_stats(kl: torch.Tensor, out, masks, target_edge: float, target_node: float) -> dict[str, float]:
    """What a logged step records beside the loss: its terms, the sparsity the penalty
    used and both kinds (sampled masks; P(z > 0)), the targets and the λs."""
    stats = {
        "kl_loss": kl.item(),
        "edge_loss": out.edge_loss.item(),
        "node_loss": 0.0 if out.node_loss is None else out.node_loss.item(),
        "model_edge_sparsity": _value(out.model_edge_sparsity),
        "model_node_sparsity": _value(out.model_node_sparsity),
        "sampled_edge_sparsity": _value(getattr(out, "sampled_edge_sparsity", None)),
        "sampled_node_sparsity": _value(getattr(out, "sampled_node_sparsity", None)),
        "expected_edge_sparsity": _value(getattr(out, "expected_edge_sparsity", None)),
        "expected_node_sparsity": _value(getattr(out, "expected_node_sparsity", None)),
        "target_edge_sparsity": target_edge,
        "target_node_sparsity": target_node,
        "lambda_edges_1": masks.sparsity_lambda_edges_1.item(),
        "lambda_edges_2": masks.sparsity_lambda_edges_2.item(),
        "lambda_nodes_1": masks.sparsity_lambda_nodes_1.item(),
        "lambda_nodes_2": masks.sparsity_lambda_nodes_2.item(),
    }
    return {k: v for k, v in stats.items() if v is not None}
