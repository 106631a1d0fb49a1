"""Checkpoints saved by the original Edge Pruning code, read into our dense masks.

The original stores one mask tensor per layer and reader kind: `h.{l}.q_read_log_alphas`
(writers x heads; Llama: `layers.{l}.…`, K and V per key/value head), `mlp_read_log_alphas`
(writers), `final_read_log_alphas` (writers), and per writer group
`attn_write_log_alphas` (heads), `mlp_write_log_alphas` (one), `token_write_log_alpha`,
`pos_write_log_alpha`, plus the four `sparsity_lambda_*`. Its writer order is ours, and
each reader tensor spans every writer, so a tensor is exactly a block of rows of our
(readers x writers) edge matrix, non-edge entries included. It also saves structural
buffers (`*_common_mask`, `token_write_mask`, `pos_write_mask`) that we derive from the
graph instead. Its config does not record embedding nodes: their masks' presence does.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch

from .graph import CircuitGraph

LAYER = r"(?:^|\.)(?:h|layers|blocks|layer)\.(\d+)\."
# (pattern, what it holds); the first match wins, so the MLP's write mask precedes
# the attention's bare `write_log_alphas` (Tracr models).
READER_KEYS = [
    (re.compile(LAYER + r"(?:.*\.)?(q|k|v)_read_log_alphas$"), "attn"),
    (re.compile(LAYER + r"(?:.*\.)?mlp_read_log_alphas$"), "mlp"),
    (re.compile(r"(?:^|\.)final_read_log_alphas?$"), "final"),
]
WRITER_KEYS = [
    (re.compile(LAYER + r"(?:.*\.)?mlp_write_log_alphas$"), "mlp"),
    (re.compile(LAYER + r"(?:.*\.)?(?:attn_)?write_log_alphas$"), "heads"),
    (re.compile(r"(?:^|\.)(token|pos)_write_log_alpha$"), "embed"),
]
LAMBDA_KEY = re.compile(r"(?:^|\.)sparsity_lambda_(edges|nodes)_(1|2)$")
STRUCTURAL_KEY = re.compile(r"(?:^|\.)(?:\w+_common_mask|token_write_mask|pos_write_mask)$")
MASK_LIKE = re.compile(r"log_alpha|sparsity_lambda|_mask$")


class OriginalCheckpointError(ValueError):
    pass


def checkpoint_tensor_names(path: str | os.PathLike) -> list[str] | None:
    """The tensor names a local checkpoint directory holds, or None when it is not one."""
    folder = Path(path)
    if not folder.is_dir():
        return None
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return list(json.loads(index.read_text())["weight_map"])
    single = folder / "model.safetensors"
    if single.is_file():
        from safetensors import safe_open

        with safe_open(str(single), framework="pt") as f:
            return list(f.keys())
    binary = folder / "pytorch_model.bin"
    if binary.is_file():
        return list(torch.load(binary, map_location="cpu", mmap=True, weights_only=True))
    return None


def read_tensors(path: str | os.PathLike, names: list[str]) -> dict[str, torch.Tensor]:
    """The named tensors of a local checkpoint (single or sharded safetensors, or .bin)."""
    folder = Path(path)
    wanted = set(names)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        files = sorted({weight_map[n] for n in wanted})
    elif (folder / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        state = torch.load(folder / "pytorch_model.bin", map_location="cpu", mmap=True, weights_only=True)
        return {n: state[n] for n in wanted}
    from safetensors import safe_open

    out = {}
    for file in files:
        with safe_open(str(folder / file), framework="pt") as f:
            for name in wanted & set(f.keys()):
                out[name] = f.get_tensor(name)
    return out


def is_original_checkpoint(names: list[str]) -> bool:
    return any(p.search(n) for n in names for p, _ in READER_KEYS)


def has_embedding_nodes(names: list[str]) -> bool:
    """Whether the original run modelled the embeddings as nodes (its config does not say)."""
    return any(n.endswith(("token_write_log_alpha", "pos_write_log_alpha")) for n in names)


def mask_like_names(names: list[str]) -> list[str]:
    return [n for n in names if MASK_LIKE.search(n)]


def _rows(graph: CircuitGraph, layer: int, kind: str) -> list[int]:
    return [i for i, r in enumerate(graph.readers) if r.layer == layer and r.kind == kind]


def convert_masks(graph: CircuitGraph, tensors: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    """Our `circuit_masks` state (edge_log_alphas, node_log_alphas, λs) from the original's
    mask tensors. Every mask-like tensor must map and every one of ours must be filled,
    else an error naming the key (`where` names the checkpoint)."""
    edges = torch.full((graph.n_readers, graph.n_writers), float("nan"))
    nodes = torch.full((graph.n_writers,), float("nan"))
    out: dict[str, torch.Tensor] = {}
    n_layers = graph.readers[-1].layer

    def fail(key: str, why: str):
        raise OriginalCheckpointError(f"{where}: mask parameter {key!r} {why}")

    def put(target: torch.Tensor, index, value: torch.Tensor, key: str) -> None:
        try:
            target[index] = value.float()
        except RuntimeError as error:
            fail(key, f"has shape {tuple(value.shape)}, which does not fit this model's graph ({error})")

    for key, value in tensors.items():
        if STRUCTURAL_KEY.search(key):
            continue
        if m := LAMBDA_KEY.search(key):
            out[f"sparsity_lambda_{m.group(1)}_{m.group(2)}"] = value.float().reshape(())
            continue
        for pattern, what in READER_KEYS:
            if m := pattern.search(key):
                if what == "final":
                    put(edges, graph.reader_index["resid_post"], value.reshape(-1), key)
                    break
                layer = int(m.group(1))
                if layer >= n_layers:
                    fail(key, f"names layer {layer}; the model has {n_layers}")
                kind = m.group(2) if what == "attn" else "mlp"
                rows = _rows(graph, layer, kind)
                put(edges, rows, value.reshape(graph.n_writers, -1).T if what == "attn" else value.reshape(1, -1), key)
                break
        else:
            for pattern, what in WRITER_KEYS:
                if m := pattern.search(key):
                    if what == "embed":
                        name = "pos_embeds" if m.group(1) == "pos" else "tok_embeds"
                        if name == "tok_embeds" and name not in graph.writer_index:
                            name = "embeds"  # Llama's one embedding node
                        if name not in graph.writer_index:
                            fail(key, "is an embedding node, but the model has no embedding nodes")
                        put(nodes, graph.writer_index[name], value.reshape(()), key)
                        break
                    layer = int(m.group(1))
                    kind = "mlp" if what == "mlp" else "head"
                    cols = [i for i, w in enumerate(graph.writers) if w.layer == layer and w.kind == kind]
                    if not cols:
                        fail(key, f"names layer {layer}; the model has {n_layers}")
                    put(nodes, cols, value.reshape(-1), key)
                    break
            else:
                fail(key, "is not a mask this model can map")
    valid = graph.edge_valid
    if torch.isnan(edges[valid]).any():
        r, w = torch.nonzero(torch.isnan(edges) & valid)[0].tolist()
        raise OriginalCheckpointError(f"{where}: no mask tensor covers edge ({graph.writers[w].name}, {graph.readers[r].name})")
    if torch.isnan(nodes).any():
        w = int(torch.nonzero(torch.isnan(nodes))[0])
        raise OriginalCheckpointError(f"{where}: no mask tensor covers node {graph.writers[w].name}")
    # Non-edge entries absent from every tensor stay as the original would hold them: unused.
    out["edge_log_alphas"] = torch.nan_to_num(edges, nan=0.0)
    out["node_log_alphas"] = nodes
    return out
