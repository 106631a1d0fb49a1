"""Circuits from edge scores: the top-n edges, or a greedy circuit grown from the
output so that every chosen edge feeds a node already connected to `resid_post`."""

from __future__ import annotations

import heapq

import torch

from .graph import CircuitGraph


def top_n_edges(graph: CircuitGraph, scores: torch.Tensor, n: int) -> torch.Tensor:
    """A (readers x writers) 0/1 matrix of the n edges with the largest |score|."""
    if not 0 <= n <= graph.n_edges:
        raise ValueError(f"cannot select {n} of {graph.n_edges} edges")
    flat = scores.detach().abs().float().cpu().masked_fill(~graph.edge_valid, -1.0).flatten()
    chosen = torch.zeros_like(flat)
    chosen[torch.topk(flat, n).indices] = 1.0
    return chosen.view(graph.n_readers, graph.n_writers)


def greedy_connected_edges(graph: CircuitGraph, scores: torch.Tensor, n: int) -> torch.Tensor:
    """Grow a circuit of n edges from `resid_post` backwards.

    Candidates are the edges into `resid_post` and into readers of nodes already in
    the circuit; each step takes the candidate of largest |score| and adds its writer
    to the circuit. Stops early when no candidate is left.
    """
    if not 0 <= n <= graph.n_edges:
        raise ValueError(f"cannot select {n} of {graph.n_edges} edges")
    mag = scores.detach().abs().float().cpu()
    valid = graph.edge_valid
    chosen = torch.zeros(graph.n_readers, graph.n_writers)
    heap: list[tuple[float, int, int]] = []

    def open_reader(r: int) -> None:
        for w in torch.nonzero(valid[r]).flatten().tolist():
            heapq.heappush(heap, (-mag[r, w].item(), r, w))

    in_circuit = torch.zeros(graph.n_writers, dtype=torch.bool)
    open_reader(graph.reader_index["resid_post"])
    count = 0
    while heap and count < n:
        _, r, w = heapq.heappop(heap)
        if chosen[r, w]:
            continue
        chosen[r, w] = 1.0
        count += 1
        if not in_circuit[w]:
            in_circuit[w] = True
            for reader in torch.nonzero(graph.feeds[:, w]).flatten().tolist():
                open_reader(reader)
    return chosen
