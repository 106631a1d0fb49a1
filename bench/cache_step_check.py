"""One pruning step with and without the fixed-pass cache, on real training batches:
are the loss, the KL and the mask gradients bitwise equal?

    python bench/cache_step_check.py --model data/models/smollm2-135m --trials 3

The cache is built as a run builds it (`build_fixed_pass_cache`, batches of
--cache_batch_size padded to the longest example); each trial draws a batch of
--batch_size training examples, seeds the mask noise, and runs `pruning_loss` and its
backward once with the per-step passes and once with the batch's cached rows. Masks
start off the saturated N(10, 0.01) (log_alpha ~ N(1, 1.5)) so that removed edges, and
so the corrupted states, carry into the loss. Not a test: it prints what it finds.
"""

from __future__ import annotations

import argparse
import json

import torch

from edge_pruning.ablation import Ablation
from edge_pruning.models import arch_of_checkpoint, load_model, load_tokenizer
from edge_pruning.pruning import pruning_loss
from edge_pruning.pruning.cache import build_fixed_pass_cache
from edge_pruning.tasks import collate, encode_split, get_task, pad_token_id


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--dataset_path", default="data/datasets/ioi")
    ap.add_argument("--examples", type=int, default=48, help="training examples cached")
    ap.add_argument("--batch_size", type=int, default=8)
    ap.add_argument("--cache_batch_size", type=int, default=16)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    model = load_model(arch_of_checkpoint(args.model), args.model, with_embedding_nodes=True, dtype=torch.float32)
    model.freeze_model_weights()
    model.train()
    torch.manual_seed(0)
    with torch.no_grad():
        model.circuit_masks.edge_log_alphas.normal_(1.0, 1.5)
        model.circuit_masks.node_log_alphas.normal_(1.0, 1.5)
        for lam in model.circuit_masks.lambdas():
            lam.fill_(0.3)
    task = get_task("ioi")
    tokenizer = load_tokenizer(None, None, args.model)
    pad = pad_token_id(tokenizer)
    train = encode_split(task, tokenizer, args.dataset_path, "train", 64, args.examples)
    cache = build_fixed_pass_cache(model, train, pad, Ablation.INTERCHANGE, args.cache_batch_size, 2**62)
    g = torch.Generator().manual_seed(1)
    rows = []
    for trial in range(args.trials):
        index = torch.randperm(len(train), generator=g)[: args.batch_size]
        batch = collate([train[i] for i in index], pad)
        results = []
        for fixed in (None, cache.lookup(index, batch)):
            model.zero_grad(set_to_none=True)
            torch.manual_seed(100 + trial)
            loss, kl, _ = pruning_loss(model, task, batch, 0.5, 0.3, fixed=fixed)
            loss.backward()
            masks = model.circuit_masks
            results.append((loss.detach(), kl.detach(), masks.edge_log_alphas.grad.clone(), masks.node_log_alphas.grad.clone()))
        (la, ka, ea, na), (lb, kb, eb, nb) = results
        row = {
            "trial": trial,
            "batch_shape": list(batch.input_ids.shape),
            "kl": ka.item(),
            "loss_equal": torch.equal(la, lb),
            "kl_equal": torch.equal(ka, kb),
            "edge_grad_equal": torch.equal(ea, eb),
            "edge_grad_max_diff": (ea - eb).abs().max().item(),
            "node_grad_equal": torch.equal(na, nb),
        }
        print(json.dumps(row))
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
