"""The computational graph of a layered transformer: writers, readers, sites, edges.

Writers are written in order (embeddings, then per layer: heads, then the MLP). A
*site* is a point in that order where a group of readers read: the attention of a
layer (every Q/K/V reader), the MLP, and the final residual. A reader at a site
reads from every writer before the site, so the edges of the graph are exactly the
pairs (writer index < site prefix). The graph is held as dense tensors, one row per
reader and one column per writer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import torch


@dataclass(frozen=True)
class Writer:
    name: str
    kind: str  # "embed" | "head" | "mlp"
    layer: int  # -1 for embeddings
    head: int = -1


@dataclass(frozen=True)
class Reader:
    name: str
    kind: str  # "q" | "k" | "v" | "mlp" | "resid_post"
    layer: int  # n_layers for resid_post
    head: int = -1  # query head for q; key/value head for k and v (the query head when ungrouped)
    # The writer nodes this reader feeds: its input is dead once all of them are removed.
    consumers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Site:
    name: str
    kind: str  # "attn" | "mlp" | "final"
    layer: int
    reader_start: int
    reader_stop: int
    n_writers_before: int

    @property
    def n_readers(self) -> int:
        return self.reader_stop - self.reader_start


def _runs(keys: list) -> list[slice]:
    """Slices of the maximal runs of equal consecutive keys."""
    out, start = [], 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[start]:
            out.append(slice(start, i))
            start = i
    return out


@dataclass
class CircuitGraph:
    """Writers, readers and sites of one model, with lookup tables and edge masks."""

    writers: list[Writer]
    readers: list[Reader]
    sites: list[Site]
    writer_index: dict[str, int] = field(init=False)
    reader_index: dict[str, int] = field(init=False)
    site_index: dict[str, int] = field(init=False)
    # The mask tensors as the original code stores them: row ranges of the dense edge
    # matrix (each layer's Q, K, V and MLP readers, the final reader; every writer
    # column, non-edges included) and writer ranges (each embedding, each layer's
    # heads, each MLP). Its deterministic masks are computed per such tensor.
    edge_mask_groups: list[slice] = field(init=False)
    node_mask_groups: list[slice] = field(init=False)

    def __post_init__(self) -> None:
        self.writer_index = {w.name: i for i, w in enumerate(self.writers)}
        self.reader_index = {r.name: i for i, r in enumerate(self.readers)}
        self.site_index = {s.name: i for i, s in enumerate(self.sites)}
        prefix = torch.zeros(len(self.readers), dtype=torch.long, device="cpu")
        for site in self.sites:
            prefix[site.reader_start : site.reader_stop] = site.n_writers_before
        self.reader_prefix = prefix
        self.edge_valid = torch.arange(len(self.writers), device="cpu")[None, :] < prefix[:, None]
        # feeds[r, w]: reader r is an input of writer node w.
        self.feeds = torch.zeros(len(self.readers), len(self.writers), dtype=torch.bool, device="cpu")
        for r, reader in enumerate(self.readers):
            for node in reader.consumers:
                self.feeds[r, self.writer_index[node]] = True
        self.edge_mask_groups = _runs([(r.layer, r.kind) for r in self.readers])
        self.node_mask_groups = _runs([(w.layer, w.kind) if w.kind != "embed" else w.name for w in self.writers])

    @property
    def original_node_count_mask(self) -> torch.Tensor:
        """The writers the original's node sparsity counts: all but `pos_embeds`
        (its GPT-2 `get_node_sparsity` reads only the token embedding's mask)."""
        return torch.tensor([w.name != "pos_embeds" for w in self.writers], device="cpu")

    @classmethod
    def layered(
        cls,
        n_layers: int,
        n_heads: int,
        n_kv_heads: int | None = None,
        embeddings: Iterable[str] = (),
        ungroup_kv: bool = False,
        parallel_mlp: bool = False,
    ) -> "CircuitGraph":
        """The layout of a decoder: per layer, its heads, then its MLP.

        `embeddings` names the embedding writers (empty when embeddings are not nodes
        and are always kept). With `n_kv_heads < n_heads`, K and V readers exist per
        key/value head (`a{L}.h{G}.k` names key/value head G), or with `ungroup_kv`
        per query head, as if every query head had its own key/value head.
        `parallel_mlp` (GPT-NeoX's parallel residual): the MLP reads the residual
        the attention reads, so it reads no heads of its own layer.
        """
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        if n_heads % n_kv_heads:
            raise ValueError(f"n_heads={n_heads} is not a multiple of n_kv_heads={n_kv_heads}")
        if ungroup_kv:
            n_kv_heads = n_heads
        group = n_heads // n_kv_heads
        writers = [Writer(name, "embed", -1) for name in embeddings]
        readers: list[Reader] = []
        sites: list[Site] = []
        for layer in range(n_layers):
            start = len(readers)
            for h in range(n_heads):
                readers.append(Reader(f"a{layer}.h{h}.q", "q", layer, h, (f"a{layer}.h{h}",)))
            for kind in ("k", "v"):
                for g in range(n_kv_heads):
                    users = tuple(f"a{layer}.h{h}" for h in range(g * group, (g + 1) * group))
                    readers.append(Reader(f"a{layer}.h{g}.{kind}", kind, layer, g, users))
            attn_prefix = len(writers)
            sites.append(Site(f"a{layer}", "attn", layer, start, len(readers), attn_prefix))
            writers.extend(Writer(f"a{layer}.h{h}", "head", layer, h) for h in range(n_heads))
            readers.append(Reader(f"m{layer}", "mlp", layer, -1, (f"m{layer}",)))
            mlp_prefix = attn_prefix if parallel_mlp else len(writers)
            sites.append(Site(f"m{layer}", "mlp", layer, len(readers) - 1, len(readers), mlp_prefix))
            writers.append(Writer(f"m{layer}", "mlp", layer))
        readers.append(Reader("resid_post", "resid_post", n_layers))
        sites.append(Site("resid_post", "final", n_layers, len(readers) - 1, len(readers), len(writers)))
        return cls(writers, readers, sites)

    def attn_site(self, layer: int) -> Site:
        """Where the Q/K/V readers of `layer` read."""
        return self.sites[self.site_index[f"a{layer}"]]

    def mlp_site(self, layer: int) -> Site:
        return self.sites[self.site_index[f"m{layer}"]]

    @property
    def final_site(self) -> Site:
        return self.sites[self.site_index["resid_post"]]

    @property
    def n_writers(self) -> int:
        return len(self.writers)

    @property
    def n_readers(self) -> int:
        return len(self.readers)

    @property
    def n_edges(self) -> int:
        return int(self.edge_valid.sum().item())

    def edge_list(self, mask: torch.Tensor | None = None) -> list[tuple[str, str]]:
        """(writer, reader) names of the edges where `mask` (readers x writers) is nonzero."""
        keep = self.edge_valid if mask is None else self.edge_valid & (mask.detach().cpu() != 0)
        rows, cols = torch.nonzero(keep, as_tuple=True)
        return [(self.writers[c].name, self.readers[r].name) for r, c in zip(rows.tolist(), cols.tolist())]

    def edge_position(self, writer: str, reader: str) -> tuple[int, int]:
        """Row and column of an edge; a clear error for names or pairs that are not edges."""
        if writer not in self.writer_index:
            raise KeyError(f"unknown writer {writer!r}; writers look like {self.writers[0].name!r}")
        if reader not in self.reader_index:
            raise KeyError(f"unknown reader {reader!r}; readers look like {self.readers[0].name!r}")
        r, w = self.reader_index[reader], self.writer_index[writer]
        if not self.edge_valid[r, w]:
            raise ValueError(f"({writer!r}, {reader!r}) is not an edge: the writer does not come before the reader")
        return r, w

    def edge_matrix(self, edges: Iterable[tuple[str, str]]) -> torch.Tensor:
        """A 0/1 readers x writers matrix holding the given edges."""
        out = torch.zeros(self.n_readers, self.n_writers, device="cpu")
        for writer, reader in edges:
            out[self.edge_position(writer, reader)] = 1.0
        return out

    def reader_alive(self, node_mask: torch.Tensor) -> torch.Tensor:
        """Per reader: whether any node consuming its input is kept (resid_post always is)."""
        kept = node_mask.detach().cpu() != 0
        return (self.feeds & kept[None, :]).any(1) | ~self.feeds.any(1)

    def effective_edges(self, edge_mask: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
        """Edges kept whose writer is kept and whose reader feeds a kept node."""
        kept = self.edge_valid & (edge_mask.detach().cpu() != 0)
        kept &= (node_mask.detach().cpu() != 0)[None, :]
        kept &= self.reader_alive(node_mask)[:, None]
        return kept

    def sanitize(self, edges: torch.Tensor) -> torch.Tensor:
        """Drop edges whose writer is unreachable from the inputs or never reaches resid_post.

        Embedding writers are inputs; when embeddings are not nodes every reader sees
        them, so every writer counts as reachable from the inputs.
        """
        edges = edges.detach().cpu().bool() & self.edge_valid
        has_embed_nodes = any(w.kind == "embed" for w in self.writers)
        forward = torch.tensor([w.kind == "embed" or not has_embed_nodes for w in self.writers], device="cpu")
        # A writer is reachable when some reader of its own node has a kept edge from a reachable writer.
        for w in range(self.n_writers):
            if not forward[w]:
                forward[w] = bool(edges[self.feeds[:, w]][:, forward].any())
        backward = torch.zeros(self.n_writers, dtype=torch.bool, device="cpu")
        useful_reader = torch.zeros(self.n_readers, dtype=torch.bool, device="cpu")
        useful_reader[self.reader_index["resid_post"]] = True
        for w in range(self.n_writers - 1, -1, -1):
            backward[w] = bool((edges[:, w] & useful_reader).any())
            if backward[w]:
                useful_reader |= self.feeds[:, w]
        return edges & forward[None, :] & backward[None, :] & useful_reader[:, None]
