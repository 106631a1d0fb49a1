"""UGS (uniform gradient sampling) as the pruning loop's second mask sampler."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from edge_pruning import l0
from edge_pruning.circuit import CircuitMasks
from edge_pruning.graph import CircuitGraph

REPO = Path(__file__).resolve().parents[1]


def test_ugs_mask_by_hand():
    """θ = 0: p = 1/2, window [3/8, 5/8]; 1 below it, 0 above, linear inside."""
    theta = torch.zeros(5)
    u = torch.tensor([0.3, 0.375, 0.4, 0.5, 0.7])
    assert torch.allclose(l0.sample_ugs_mask(theta, u), torch.tensor([1.0, 1.0, 0.9, 0.5, 0.0]))
    # θ = ln 3: p = 3/4, s = 3/16, window [21/32, 27/32].
    theta = torch.full((3,), torch.log(torch.tensor(3.0)).item())
    u = torch.tensor([0.6, 0.75, 0.9])
    assert torch.allclose(l0.sample_ugs_mask(theta, u), torch.tensor([1.0, 0.5, 0.0]), atol=1e-6)


@pytest.mark.parametrize("theta", [-2.0, 0.0, 1.0, 3.0])
def test_ugs_is_unbiased_for_the_bernoulli_circuit(theta):
    """E[z] = p and E[dz/dθ] = dp/dθ = p (1 - p) (Monte Carlo over u), and P(z > 0)
    is `prob_nonzero`."""
    g = torch.Generator().manual_seed(0)
    u = torch.rand(400_000, generator=g, dtype=torch.float64)
    t = torch.full_like(u, theta).requires_grad_()
    z = l0.sample_ugs_mask(t, u)
    (grad,) = torch.autograd.grad(z.sum(), t)
    p = torch.sigmoid(torch.tensor(theta, dtype=torch.float64)).item()
    assert z.mean().item() == pytest.approx(p, abs=3e-3)
    assert grad.mean().item() == pytest.approx(p * (1 - p), rel=2e-2)
    expected_nonzero = l0.prob_nonzero(torch.tensor(theta, dtype=torch.float64), l0.MaskSampler.UGS).item()
    assert (z > 0).double().mean().item() == pytest.approx(expected_nonzero, abs=3e-3)


def test_masks_use_the_sampler():
    graph = CircuitGraph.layered(6, 4, embeddings=("embeds",))
    masks = CircuitMasks(graph)
    assert masks.mask_sampler is l0.MaskSampler.HARD_CONCRETE
    masks.mask_sampler = "ugs"
    with torch.no_grad():
        masks.edge_log_alphas.fill_(0.0)
    masks.train()
    torch.manual_seed(0)
    drawn = masks.edge_masks()[graph.edge_valid]
    # UGS at θ = 0: 3/8 of the draws are exactly 1, 3/8 exactly 0 (hard-concrete's at θ = 0: 0.17 each).
    assert (drawn == 1).float().mean().item() == pytest.approx(0.375, abs=0.03)
    assert (drawn == 0).float().mean().item() == pytest.approx(0.375, abs=0.03)
    assert masks.expected_edge_sparsity().item() == pytest.approx(1 - 0.625)
    with pytest.raises(ValueError, match="--mask_sampler"):
        masks.mask_sampler = "bernoulli"


def run_prune(args: list) -> None:
    argv = sys.argv
    sys.argv = [str(REPO / "src/prune/fpt2_ioi.py"), *map(str, args)]
    try:
        runpy.run_path(str(REPO / "src/prune/fpt2_ioi.py"), run_name="__main__")
    finally:
        sys.argv = argv


def test_pruning_loop_with_ugs(tiny_gpt2, tmp_path):
    out = tmp_path / "run"
    run_prune([
        "--initialize_from", tiny_gpt2, "--output_dir", out, "--max_steps", 6, "--per_device_train_batch_size", 4,
        "--logging_steps", 1, "--save_steps", 6, "--report_to", "none", "--max_train_samples", 8, "--max_eval_samples", 4,
        "--num_sparsity_warmup_steps", 4, "--target_edge_sparsity", 0.5, "--edge_learning_rate", 0.1,
        "--reg_edge_learning_rate", 0.1, "--with_embedding_nodes", "--disable_node_loss", "--mask_sampler", "ugs",
    ])  # fmt: skip
    assert json.loads((out / "pruning_args.json").read_text())["mask_sampler"] == "ugs"
    log_alpha = next(v for k, v in load_file(out / "model.safetensors").items() if k.endswith("edge_log_alphas"))
    moved = (log_alpha - l0.UGS_INIT_MEAN).abs()
    # Started at θ = 1 (not 10) and trained: the masks moved, by about lr x steps at most.
    assert moved.max().item() > 0.05 and moved.max().item() < 1.0
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert all(0.0 <= r["sampled_edge_sparsity"] <= 1.0 for r in rows if "sampled_edge_sparsity" in r)


def test_ugs_mask_is_finite_when_saturated():
    """Past |log_alpha| ~ 17, p(1 - p) is 0 in float32: masks and gradients stay finite and
    the mask is what the limit gives (1 for large log_alpha, 0 for very negative)."""
    log_alpha = torch.tensor([20.0, 17.0, -90.0, -110.0], requires_grad=True)
    u = torch.tensor([0.5, 0.999, 0.3, 0.7])
    z = l0.sample_ugs_mask(log_alpha, u)
    z.sum().backward()
    assert torch.isfinite(z).all() and torch.isfinite(log_alpha.grad).all()
    assert z.tolist() == [1.0, 1.0, 0.0, 0.0]
