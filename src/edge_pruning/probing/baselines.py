"""The baselines circuit probing is compared with, on the same block and position:

- linear and MLP probes (cross-entropy classifiers) on the block's updates and on the
  residual stream after it (`resid_mid` after attention, `resid_post` after the MLP,
  where the original probed);
- amnesic probing: LEACE (the `concept-erasure` package) erases the variable's linear
  information from `resid_mid` or `resid_post` at the position, the erased vectors
  are patched back, and the task's accuracy is measured.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

LOCATIONS = ("attn_update", "mlp_update", "resid_mid", "resid_post")


@contextlib.contextmanager
def _hooks(*handles):
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def block_vectors(model, inputs: torch.Tensor, layer: int, position: int) -> dict[str, torch.Tensor]:
    """The block's input-side views at `position`: both updates and both residual states."""
    block = model.transformer.h[layer]
    seen = {}

    def keep(name):
        def hook(module, args, output):
            seen[name] = (output[0] if isinstance(output, tuple) else output)[:, position]

        return hook

    def keep_input(module, args):
        seen["resid_pre"] = args[0][:, position]

    with _hooks(block.register_forward_pre_hook(keep_input), block.attn.register_forward_hook(keep("attn_update")),
                block.mlp.register_forward_hook(keep("mlp_update"))):  # fmt: skip
        model.transformer(inputs)
    mid = seen["resid_pre"] + seen["attn_update"]
    return {"attn_update": seen["attn_update"], "mlp_update": seen["mlp_update"], "resid_mid": mid,
            "resid_post": mid + seen["mlp_update"]}  # fmt: skip


@dataclass
class ClassifierSettings:
    """The original's probing configs: 100 epochs, batch 500, AdamW lr 0.1, MLP width 256."""

    epochs: int = 100
    batch_size: int = 500
    lr: float = 0.1
    hidden: int = 256
    seed: int = 0


def train_classifier(kind: str, x: torch.Tensor, y: torch.Tensor, n_classes: int, s: ClassifierSettings) -> nn.Module:
    torch.manual_seed(s.seed)
    d = x.shape[1]
    if kind == "linear":
        net = nn.Linear(d, n_classes)
    elif kind == "mlp":
        net = nn.Sequential(nn.Linear(d, s.hidden), nn.ReLU(), nn.Linear(s.hidden, n_classes))
    else:
        raise ValueError(f"unknown probe kind {kind!r} (linear or mlp)")
    opt = torch.optim.AdamW(net.parameters(), lr=s.lr)
    g = torch.Generator().manual_seed(s.seed)
    for _ in range(s.epochs):
        order = torch.randperm(len(y), generator=g)
        for i in range(0, max(len(y) - s.batch_size, 0) + 1, s.batch_size):
            idx = order[i : i + s.batch_size]
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            loss.backward()
            opt.step()
            opt.zero_grad()
    return net.eval()


@torch.no_grad()
def classifier_accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((net(x).argmax(-1) == y).double().mean())


@torch.no_grad()
def patched_accuracy(model, inputs, labels, layer: int, position: int, location: str, vectors: torch.Tensor) -> float:
    """Task accuracy with the residual stream at (layer, position, location) replaced."""
    block = model.transformer.h[layer]
    state = {}

    def keep_input(module, args):
        state["x"] = args[0]

    def patch_mid(module, args, output):
        out, rest = output[0].clone(), output[1:]
        out[:, position] = vectors - state["x"][:, position]  # so that x + attn = vectors
        return (out, *rest)

    def patch_post(module, args, output):
        out = output.clone()
        out[:, position] = vectors
        return out

    if location == "resid_mid":
        handles = (block.register_forward_pre_hook(keep_input), block.attn.register_forward_hook(patch_mid))
    elif location == "resid_post":
        handles = (block.register_forward_hook(patch_post),)
    else:
        raise ValueError(f"amnesic probing patches resid_mid or resid_post, not {location!r}")
    with _hooks(*handles):
        logits = model(inputs).logits[:, -1]
    return float((logits.argmax(-1) == labels).double().mean())


@dataclass
class AmnesicResult:
    location: str
    vanilla: float  # task accuracy, nothing patched
    erased: float  # task accuracy with the erased vectors patched in
    probe_before: float  # linear probe accuracy on the vectors
    probe_after: float  # and on the erased vectors (near chance if erasure worked)


def amnesic_probe(model, train_inputs, train_vars, test_inputs, test_vars, test_labels, layer: int, position: int,
                  location: str, n_classes: int, s: ClassifierSettings) -> AmnesicResult:  # fmt: skip
    """Fit LEACE on the training split's vectors, erase and patch on the test split."""
    from concept_erasure import LeaceEraser

    train_x = block_vectors(model, train_inputs, layer, position)[location]
    test_x = block_vectors(model, test_inputs, layer, position)[location]
    eraser = LeaceEraser.fit(train_x.double(), nn.functional.one_hot(train_vars, n_classes).double())
    erased_train = eraser(train_x.double()).float()
    erased_test = eraser(test_x.double()).float()
    before = classifier_accuracy(train_classifier("linear", train_x, train_vars, n_classes, s), test_x, test_vars)
    after = classifier_accuracy(train_classifier("linear", erased_train, train_vars, n_classes, s), erased_test, test_vars)
    with torch.no_grad():
        vanilla = float((model(test_inputs).logits[:, -1].argmax(-1) == test_labels).double().mean())
    erased = patched_accuracy(model, test_inputs, test_labels, layer, position, location, erased_test)
    return AmnesicResult(location, vanilla, erased, before, after)
