"""Mask parameters and the circuit API shared by every circuit model.

`CircuitMasks` owns the learnable state: one dense `log_alpha` per (reader, writer)
pair (only real edges count), one per writer node, and the four Lagrange
multipliers. `CircuitModelMixin` gives each model file the API users know from the
original code: `get_edges()`, `set_edge_threshold_for_deterministic()`,
`add_or_remove_edge()`, sparsities, and loading a circuit from an edges JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from enum import Enum
from typing import Iterable, Iterator

import torch
from torch import nn
from transformers.utils import ModelOutput, logging

from . import l0
from .graph import CircuitGraph
from .mixing import ResidualMixer

logger = logging.get_logger(__name__)

# log_alpha given to edges and nodes that a user forces into or out of a circuit.
FORCED_LOG_ALPHA = 20.0


class SparsityPenalty(str, Enum):
    """The sparsity `s` in the Lagrangian λ1 (s - t) + λ2 (s - t)^2.

    SAMPLED (the original's): 1 - Σz / n over this forward's sampled masks, with
    gradients through the samples. EXPECTED (ours, an option): 1 - Σ P(z > 0) / n,
    the expected L0 norm; it maps a target to a different final sparsity.
    """

    SAMPLED = "sampled"
    EXPECTED = "expected"


@dataclass
class PrefixState:
    """What a masked forward needs to start at `layer`: the deltas x_w - c_w of the
    writers before that layer's attention site (p, B, S, D) and the sum of their
    corrupted outputs (B, S, D), None under zero ablation."""

    layer: int
    deltas: torch.Tensor
    corrupted_sum: torch.Tensor | None


class CircuitMasks(nn.Module):
    """Hard-concrete masks over the edges and nodes of a `CircuitGraph`."""

    def __init__(self, graph: CircuitGraph) -> None:
        super().__init__()
        self.graph = graph
        self.edge_log_alphas = nn.Parameter(torch.empty(graph.n_readers, graph.n_writers))
        self.node_log_alphas = nn.Parameter(torch.empty(graph.n_writers))
        self.sparsity_lambda_edges_1 = nn.Parameter(torch.zeros(()))
        self.sparsity_lambda_edges_2 = nn.Parameter(torch.zeros(()))
        self.sparsity_lambda_nodes_1 = nn.Parameter(torch.zeros(()))
        self.sparsity_lambda_nodes_2 = nn.Parameter(torch.zeros(()))
        self.edge_threshold: float | None = None
        self.node_threshold: float | None = None
        self._edge_valid: torch.Tensor | None = None
        self.mask_rule = l0.MaskRule.ORIGINAL
        self.sparsity_penalty = SparsityPenalty.SAMPLED
        self.mask_sampler = l0.MaskSampler.HARD_CONCRETE
        # Forward-time state, held here so every wrapper of the model shares it.
        self.enabled = True  # False: run as the full model
        self.override: torch.Tensor | None = None  # explicit (readers x writers) masks
        self.prefix: PrefixState | None = None  # start masked forwards at a layer (ACDC)
        self.neuron_override: torch.Tensor | None = None  # (writers x hidden) neuron masks
        # The (edge, node) masks the last masked forward used, for the sampled penalty.
        self.last_drawn: tuple[torch.Tensor, torch.Tensor] | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """log_alpha ~ N(10, 0.01) and λ = 0 (method.md §3-4).

        Uses transformers' init functions, which skip parameters a checkpoint loaded.
        """
        from transformers import initialization as init

        init.normal_(self.edge_log_alphas, mean=l0.INIT_MEAN, std=l0.INIT_STD)
        init.normal_(self.node_log_alphas, mean=l0.INIT_MEAN, std=l0.INIT_STD)
        for lam in self.lambdas():
            init.zeros_(lam)

    @property
    def mask_rule(self) -> l0.MaskRule:
        return self._mask_rule

    @mask_rule.setter
    def mask_rule(self, value: l0.MaskRule | str) -> None:
        self._mask_rule = l0.MaskRule(value)  # a string names one, anything else is an error

    @property
    def sparsity_penalty(self) -> SparsityPenalty:
        return self._sparsity_penalty

    @sparsity_penalty.setter
    def sparsity_penalty(self, value: SparsityPenalty | str) -> None:
        self._sparsity_penalty = SparsityPenalty(value)

    @property
    def mask_sampler(self) -> l0.MaskSampler:
        """How training draws masks (hard-concrete or UGS); evaluation's expected zeros follow it."""
        return self._mask_sampler

    @mask_sampler.setter
    def mask_sampler(self, value: l0.MaskSampler | str) -> None:
        self._mask_sampler = l0.MaskSampler.parse(value)

    @property
    def edge_valid(self) -> torch.Tensor:
        """Which (reader, writer) entries are edges, on the masks' device.

        Derived from the graph rather than held as a buffer, so that no loader can
        leave it uninitialised.
        """
        device = self.edge_log_alphas.device
        if self._edge_valid is None or self._edge_valid.device != device:
            self._edge_valid = self.graph.edge_valid.to(device)
        return self._edge_valid

    def lambdas(self) -> list[nn.Parameter]:
        return [
            self.sparsity_lambda_edges_1,
            self.sparsity_lambda_edges_2,
            self.sparsity_lambda_nodes_1,
            self.sparsity_lambda_nodes_2,
        ]

    def edge_masks(self) -> torch.Tensor:
        """(readers, writers) masks: sampled in training, deterministic in eval; 0 off-graph."""
        if self.training:
            return l0.sample_mask(self.edge_log_alphas, self.mask_sampler) * self.edge_valid
        groups = self.graph.edge_mask_groups
        return l0.eval_mask(self.edge_log_alphas, self.edge_threshold, self.edge_valid, self.mask_rule, groups, self.mask_sampler)

    def node_masks(self) -> torch.Tensor:
        if self.training:
            return l0.sample_mask(self.node_log_alphas, self.mask_sampler)
        groups = self.graph.node_mask_groups
        return l0.eval_mask(self.node_log_alphas, self.node_threshold, None, self.mask_rule, groups, self.mask_sampler)

    def draw(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This forward's (edge, node) masks, kept for the sampled sparsity penalty."""
        self.last_drawn = (self.edge_masks(), self.node_masks())
        return self.last_drawn

    def expected_edge_sparsity(self) -> torch.Tensor:
        kept = (l0.prob_nonzero(self.edge_log_alphas, self.mask_sampler) * self.edge_valid).sum()
        return 1.0 - kept / self.graph.n_edges

    def expected_node_sparsity(self) -> torch.Tensor:
        return 1.0 - l0.prob_nonzero(self.node_log_alphas, self.mask_sampler).mean()

    def drawn_sparsities(self) -> tuple[torch.Tensor, torch.Tensor]:
        """1 - Σz / n for edges (real edges only) and nodes, from the last forward's masks."""
        edges, nodes = self.last_drawn if self.last_drawn is not None else self.draw()
        return 1.0 - (edges * self.edge_valid).sum() / self.graph.n_edges, 1.0 - nodes.mean()

    def lagrangian(self, sparsity: torch.Tensor, target: float, nodes: bool) -> torch.Tensor:
        """λ1 (s - t) + λ2 (s - t)^2; the λs are trained to maximise it."""
        lam1, lam2 = (
            (self.sparsity_lambda_nodes_1, self.sparsity_lambda_nodes_2)
            if nodes
            else (self.sparsity_lambda_edges_1, self.sparsity_lambda_edges_2)
        )
        gap = sparsity - target
        return lam1 * gap + lam2 * gap * gap


class EdgeCount(str, Enum):
    """Which edges count as in the circuit (see `CircuitModelMixin.get_edges`)."""

    KEPT_WRITERS = "kept_writers"  # the original's: mask on, writer kept
    STRICT = "strict"  # ours: also the reader's node kept
    MASKS = "masks"  # the edge masks alone


@dataclass
class CircuitModelOutput(ModelOutput):
    """Logits (or a base model's `last_hidden_state`) plus what pruning needs: writer
    states and sparsity penalties."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    writer_states: torch.Tensor | None = None
    edge_loss: torch.Tensor | None = None
    node_loss: torch.Tensor | None = None
    model_edge_sparsity: torch.Tensor | None = None
    model_node_sparsity: torch.Tensor | None = None
    sampled_edge_sparsity: torch.Tensor | None = None
    sampled_node_sparsity: torch.Tensor | None = None
    expected_edge_sparsity: torch.Tensor | None = None
    expected_node_sparsity: torch.Tensor | None = None
    target_edge_sparsity: float | None = None
    target_node_sparsity: float | None = None


class CircuitModelMixin:
    """The circuit API, for a model holding `circuit_masks` (a `CircuitMasks`)."""

    circuit_masks: CircuitMasks
    # Model types whose checkpoints this class loads; set by each model class.
    accepted_model_types: tuple[str, ...] = ()

    @property
    def circuit_graph(self) -> CircuitGraph:
        return self.circuit_masks.graph

    # Loading -----------------------------------------------------------------

    @classmethod
    def check_checkpoint_type(cls, pretrained_model_name_or_path) -> None:
        """A clear error for a checkpoint of another architecture."""
        from .models import read_config_dict

        path = os.fspath(pretrained_model_name_or_path)
        try:
            config_dict = read_config_dict(path)
        except OSError:
            return  # let from_pretrained report the missing checkpoint itself
        model_type = config_dict.get("model_type")
        if model_type not in cls.accepted_model_types:
            raise ValueError(
                f"{path} holds a {model_type!r} checkpoint; {cls.__name__} loads only "
                f"{', '.join(cls.accepted_model_types)} checkpoints"
            )

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """Load any checkpoint of the architecture: ours, a plain transformers one (its
        masks start at N(10, 0.01)), or one saved by the original code, whose masks are
        mapped into ours (and whose mask keys decide `with_embedding_nodes`). A mask-like
        key that cannot be mapped is an error, never dropped."""
        from . import original_checkpoint as original

        cls.check_checkpoint_type(pretrained_model_name_or_path)
        names = original.checkpoint_tensor_names(pretrained_model_name_or_path) or []
        from_original = original.is_original_checkpoint(names)
        if from_original:
            embedding_nodes = original.has_embedding_nodes(names)
            if kwargs.get("with_embedding_nodes", embedding_nodes) != embedding_nodes:
                logger.warning(f"{os.fspath(pretrained_model_name_or_path)} was pruned with_embedding_nodes={embedding_nodes}; using that")
            kwargs["with_embedding_nodes"] = embedding_nodes
        want_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs)
        masks = model.circuit_masks
        with torch.no_grad():
            if from_original:
                mask_names = original.mask_like_names(names)
                tensors = original.read_tensors(pretrained_model_name_or_path, mask_names)
                state = original.convert_masks(masks.graph, tensors, os.fspath(pretrained_model_name_or_path))
                for key, value in state.items():
                    getattr(masks, key).copy_(value)
                info["missing_keys"] = [k for k in info["missing_keys"] if ".circuit_masks." not in f".{k}"]
                mapped = set(mask_names)
                info["unexpected_keys"] = [k for k in info["unexpected_keys"] if k not in mapped]
            unmapped = original.mask_like_names(list(info["unexpected_keys"]))
            if unmapped:
                raise original.OriginalCheckpointError(
                    f"{os.fspath(pretrained_model_name_or_path)}: mask parameter {unmapped[0]!r} is not one this model can map"
                )
            # Initialise the mask parameters the checkpoint lacks, whatever the loader did.
            for key in sorted(info["missing_keys"]):  # a fixed order: the draws follow the seed
                if ".circuit_masks." not in f".{key}":
                    continue
                param = model.get_parameter(key)
                if "log_alphas" in key:
                    param.normal_(l0.INIT_MEAN, l0.INIT_STD)
                else:
                    param.zero_()
        return (model, info) if want_info else model

    def freeze_model_weights(self) -> None:
        """Only masks and λs train; the model's own weights stay fixed."""
        mask_params = {id(p) for p in self.circuit_masks.parameters()}
        for param in self.parameters():
            param.requires_grad_(id(param) in mask_params)

    # Forward helpers -----------------------------------------------------------

    def full_model(self) -> contextlib.AbstractContextManager[None]:
        """Run as the unpruned model (no masks) inside the block; restores the state after."""
        return _setting(self.circuit_masks, "enabled", False)

    def masks_override(self, edge_masks: torch.Tensor) -> contextlib.AbstractContextManager[None]:
        """Inside the block, the circuit uses exactly these (readers x writers) masks
        (node masks folded in), e.g. ones requiring grad for attribution patching."""
        graph = self.circuit_graph
        if tuple(edge_masks.shape) != (graph.n_readers, graph.n_writers):
            raise ValueError(f"masks must be {(graph.n_readers, graph.n_writers)}, got {tuple(edge_masks.shape)}")
        return _setting(self.circuit_masks, "override", edge_masks)

    def neuron_masks_override(self, neuron_masks: torch.Tensor) -> contextlib.AbstractContextManager[None]:
        """Inside the block, masked forwards also mask each writer's output dimensions
        (writers x hidden): a removed neuron carries the writer's corrupted value."""
        if neuron_masks.shape[0] != self.circuit_graph.n_writers or neuron_masks.dim() != 2:
            raise ValueError(f"neuron masks must be ({self.circuit_graph.n_writers}, hidden), got {tuple(neuron_masks.shape)}")
        return _setting(self.circuit_masks, "neuron_override", neuron_masks)

    def resume_from_layer(self, prefix: PrefixState) -> contextlib.AbstractContextManager[None]:
        """Inside the block, masked forwards skip the layers below `prefix.layer` (the
        number of layers: all of them) and take the writers before it from `prefix`. Exact while every reader below that
        layer has the masks `prefix` was computed with (ACDC changes readers from the
        output down, so the prefix of the reader it tests is the full model's)."""
        graph = self.circuit_graph
        site = graph.final_site if prefix.layer == graph.final_site.layer else graph.attn_site(prefix.layer)
        if prefix.deltas.shape[0] != site.n_writers_before:
            raise ValueError(f"layer {prefix.layer} has {site.n_writers_before} writers before it, the prefix {prefix.deltas.shape[0]}")
        return _setting(self.circuit_masks, "prefix", prefix)

    def effective_masks(self) -> torch.Tensor:
        """Edge masks with the writers' node masks folded in: m_rw * z_w."""
        masks = self.circuit_masks
        if masks.override is not None:
            masks.last_drawn = None
            return masks.override * masks.edge_valid
        edges, nodes = masks.draw()
        return edges * nodes[None, :]

    def make_mixer(
        self,
        always_on: torch.Tensor,
        corr_x: torch.Tensor | None,
        output_writer_states: bool,
        mask_grad_deltas: torch.Tensor | None = None,
    ) -> ResidualMixer:
        """The residual stream for one forward: plain for the full model or writer states."""
        use_masks = self.circuit_masks.enabled and not output_writer_states
        if corr_x is not None and not use_masks and not output_writer_states:
            raise ValueError("corr_x was given to the full model (masks disabled); it would be ignored")
        if use_masks:
            masks = self.effective_masks().to(always_on.dtype)
            neurons = self.circuit_masks.neuron_override
            mixer = ResidualMixer(self.circuit_graph, always_on, masks, corr_x, mask_grad_deltas=mask_grad_deltas, neuron_masks=neurons)
            prefix = self.circuit_masks.prefix
            if prefix is not None:
                mixer.resume(prefix.layer, prefix.deltas, prefix.corrupted_sum)
            return mixer
        return ResidualMixer(self.circuit_graph, always_on, keep_writer_states=output_writer_states)

    def circuit_output(
        self,
        mixer: ResidualMixer,
        logits: torch.Tensor,
        output_writer_states: bool,
        target_edge_sparsity: float | None,
        target_node_sparsity: float | None,
        last_hidden_state: torch.Tensor | None = None,
    ) -> CircuitModelOutput:
        """The output every model returns: logits (a base model: its final hidden
        state), writer states if asked for, and in the circuit the sparsity terms."""
        out = CircuitModelOutput(logits=logits, last_hidden_state=last_hidden_state)
        if output_writer_states:
            out.writer_states = mixer.writer_states()
        if mixer.masked:
            for key, value in self.sparsity_outputs(target_edge_sparsity, target_node_sparsity).items():
                out[key] = value
        return out

    def sparsity_outputs(self, target_edge_sparsity: float | None, target_node_sparsity: float | None) -> dict:
        """The Lagrangian terms and both sparsities (sampled and expected) for the
        pruning loss; `model_*_sparsity` is the one the penalty uses."""
        masks = self.circuit_masks
        sampled_edge, sampled_node = masks.drawn_sparsities()
        expected_edge, expected_node = masks.expected_edge_sparsity(), masks.expected_node_sparsity()
        if masks.sparsity_penalty is SparsityPenalty.SAMPLED:
            edge_sparsity, node_sparsity = sampled_edge, sampled_node
        else:
            edge_sparsity, node_sparsity = expected_edge, expected_node
        out = {
            "model_edge_sparsity": edge_sparsity,
            "model_node_sparsity": node_sparsity,
            "sampled_edge_sparsity": sampled_edge,
            "sampled_node_sparsity": sampled_node,
            "expected_edge_sparsity": expected_edge,
            "expected_node_sparsity": expected_node,
            "target_edge_sparsity": target_edge_sparsity,
            "target_node_sparsity": target_node_sparsity,
        }
        if target_edge_sparsity is not None:
            out["edge_loss"] = masks.lagrangian(edge_sparsity, target_edge_sparsity, nodes=False)
        if target_node_sparsity is not None:
            out["node_loss"] = masks.lagrangian(node_sparsity, target_node_sparsity, nodes=True)
        return out

    # Deterministic masks, thresholds, sparsities ------------------------------------

    def set_edge_threshold_for_deterministic(self, threshold: float | None) -> None:
        self.circuit_masks.edge_threshold = threshold

    def set_node_threshold_for_deterministic(self, threshold: float | None) -> None:
        self.circuit_masks.node_threshold = threshold

    def _eval_masks(self) -> tuple[torch.Tensor, torch.Tensor]:
        masks = self.circuit_masks
        was_training = masks.training
        masks.eval()
        try:
            with torch.no_grad():
                return masks.edge_masks().float().cpu(), masks.node_masks().float().cpu()
        finally:
            masks.train(was_training)

    def get_edge_sparsity(self) -> float:
        """1 - mean deterministic edge mask (binarised when a threshold is set)."""
        edges, _ = self._eval_masks()
        return 1.0 - edges.sum().item() / self.circuit_graph.n_edges

    def get_node_sparsity(self) -> float:
        """1 - mean deterministic node mask. Under the original mask rule, over the
        writers the original counts (all but `pos_embeds`)."""
        _, nodes = self._eval_masks()
        if self.circuit_masks.mask_rule is l0.MaskRule.ORIGINAL:
            nodes = nodes[self.circuit_graph.original_node_count_mask]
        return 1.0 - nodes.sum().item() / max(nodes.numel(), 1)

    def get_effective_edge_sparsity(self) -> float:
        """The original's overall edge sparsity: edges out of removed writers count as removed."""
        return 1.0 - len(self.get_edges(EdgeCount.KEPT_WRITERS)) / self.circuit_graph.n_edges

    def get_strict_edge_sparsity(self) -> float:
        """Ours, stricter: also counts edges into readers of removed nodes as removed."""
        return 1.0 - len(self.get_edges(EdgeCount.STRICT)) / self.circuit_graph.n_edges

    def get_edges(self, count: "EdgeCount | str | None" = None, sanitize: bool = False) -> list[tuple[str, str]]:
        """The circuit's (writer, reader) edges under the current deterministic masks.

        By default (`EdgeCount.KEPT_WRITERS`, the original's) an edge is in the
        circuit when its mask is on and its writer node is kept; `EdgeCount.STRICT`
        also drops edges into readers of removed nodes; `EdgeCount.MASKS` reads the
        edge masks alone. `sanitize` also drops edges that no path connects to both
        the inputs and `resid_post` (method.md §5).
        """
        count = EdgeCount.KEPT_WRITERS if count is None else EdgeCount(count)
        edges, nodes = self._eval_masks()
        graph = self.circuit_graph
        kept = graph.edge_valid & (edges != 0)
        if count is EdgeCount.KEPT_WRITERS:
            kept &= (nodes != 0)[None, :]
        elif count is EdgeCount.STRICT:
            kept = graph.effective_edges(edges, nodes)
        if sanitize:
            kept = graph.sanitize(kept)
        return graph.edge_list(kept)

    # Editing circuits ------------------------------------------------------------

    def add_or_remove_edge(self, writer: str, reader: str, remove: bool = False) -> None:
        """Force one edge into (or out of) the circuit."""
        r, w = self.circuit_graph.edge_position(writer, reader)
        with torch.no_grad():
            self.circuit_masks.edge_log_alphas[r, w] = -FORCED_LOG_ALPHA if remove else FORCED_LOG_ALPHA

    def load_edges(self, edges: Iterable[tuple[str, str]] | str | os.PathLike) -> None:
        """Make the model exactly the given circuit: those edges on, every other edge
        off, every node on. Accepts a list of pairs or the path of an edges JSON."""
        if isinstance(edges, (str, os.PathLike)):
            edges = load_edges_json(edges)
        self.set_circuit(self.circuit_graph.edge_matrix(edges))

    def set_circuit(self, chosen: torch.Tensor) -> None:
        """Like `load_edges`, from a 0/1 (readers x writers) matrix."""
        masks = self.circuit_masks
        with torch.no_grad():
            masks.edge_log_alphas.copy_(((chosen != 0).float() * 2 - 1) * FORCED_LOG_ALPHA)
            masks.node_log_alphas.fill_(FORCED_LOG_ALPHA)
        self.set_edge_threshold_for_deterministic(0.5)
        self.set_node_threshold_for_deterministic(0.5)


@contextlib.contextmanager
def _setting(obj: object, attr: str, value: object) -> Iterator[None]:
    """Set `obj.attr` to `value` inside the block; the previous value is restored after."""
    previous = getattr(obj, attr)
    setattr(obj, attr, value)
    try:
        yield
    finally:
        setattr(obj, attr, previous)


def gather_positions(hidden: torch.Tensor, positions: torch.Tensor | None) -> torch.Tensor:
    """hidden (B, S, D) at `positions` (B, P), -1 for padding; all of it when None."""
    if positions is None:
        return hidden
    index = positions.clamp(min=0).to(hidden.device)
    return hidden.gather(1, index[..., None].expand(-1, -1, hidden.shape[-1]))


def save_edges_json(path: str | os.PathLike, edges: list[tuple[str, str]]) -> None:
    """Write a circuit as a JSON list of [writer, reader] pairs, atomically."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump([list(e) for e in edges], f)
    os.replace(tmp, path)


def load_edges_json(path: str | os.PathLike) -> list[tuple[str, str]]:
    """Edges from a JSON list of [writer, reader] pairs (or a dict with an "edges" list)."""
    with open(path) as f:
        data = json.load(f)
    if isinstance(data, dict):
        data = data.get("edges")
    if not isinstance(data, list) or not all(isinstance(e, (list, tuple)) and len(e) == 2 for e in data):
        raise ValueError(f"{path}: expected a JSON list of [writer, reader] pairs")
    return [(str(w), str(r)) for w, r in data]
