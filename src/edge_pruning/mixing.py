"""The edge-mixing kernel: how readers read the residual stream of a circuit model.

With edge masks m (readers x writers, node masks folded in), clean writer outputs
x_w and corrupted ones c_w, a reader at a site p reads

    in_r = C_p + sum_{w < p} m_rw (x_w - c_w),      C_p = sum_{w < p} c_w (+ kept inputs)

(method.md §9). The deltas x_w - c_w are written once, as writers run, into one
writer-major buffer; a site reads with one matrix product over the writers before
it. The autograd function below saves only the small mask matrix: the buffer is
append-only during a forward, so backward reads it as it was.
"""

from __future__ import annotations

import torch

from .graph import CircuitGraph, Site


class _GradientAccumulator:
    """dL/d(delta_w) for every writer, summed over the sites that read it.

    Each site adds its share in place (one addmm into the prefix); the earliest
    reader of a block, whose backward runs after every later site's (its output
    feeds the next block, which all later sites read), hands the finished sum to
    autograd. This replaces one gradient per (site, block) pair, which autograd
    would otherwise allocate and add up.
    """

    def __init__(self) -> None:
        self.grad: torch.Tensor | None = None

    def add(self, lo: int, masks_t: torch.Tensor, grad_flat: torch.Tensor, n_writers: int) -> torch.Tensor:
        """Add masks^T @ G into the rows of writers lo..lo+len(masks_t); returns all rows."""
        if self.grad is None:
            self.grad = grad_flat.new_zeros(n_writers, grad_flat.shape[1])
        self.grad[lo : lo + masks_t.shape[0]].addmm_(masks_t, grad_flat)
        return self.grad


class _SiteRead(torch.autograd.Function):
    """out = base + masks @ buffer[lo:hi], with gradients routed to the writer blocks.

    `base` is the corrupted prefix sum C_p (no grad), or a partial read of the same
    readers over buffer[:lo] (with grad). The mask gradient is G @ deltas^T with the
    buffer's deltas, or with `grad_slice` where given (attribution methods that score
    clean deltas at other points of a path). `new_blocks` are the blocks written since
    the previous read: this read is their earliest, so it delivers their gradients.
    Older blocks are not inputs (they need not stay alive): every later read's
    backward has added its share to the accumulator before theirs runs.
    """

    @staticmethod
    def forward(ctx, masks, base, buffer_slice, grad_slice, accumulator, layout, *new_blocks):
        ctx.save_for_backward(masks)
        ctx.buffer_slice = buffer_slice if grad_slice is None else grad_slice
        ctx.accumulator = accumulator
        ctx.layout = layout  # (first writer of the slice, first writer of the new blocks, writers)
        ctx.block_shapes = [b.shape for b in new_blocks]
        ctx.base_shape = base.shape
        flat = buffer_slice.flatten(1)
        out = torch.addmm(base.reshape(-1, flat.shape[1]), masks.to(flat.dtype), flat)
        return out.view(masks.shape[0], *buffer_slice.shape[1:])

    @staticmethod
    def backward(ctx, grad_out):
        (masks,) = ctx.saved_tensors
        lo, start, n_writers = ctx.layout
        flat = ctx.buffer_slice.flatten(1)
        grad_flat = grad_out.reshape(grad_out.shape[0], -1)
        grad_masks = grad_base = None
        if ctx.needs_input_grad[0]:
            grad_masks = (grad_flat @ flat.t()).to(masks.dtype)
        if ctx.needs_input_grad[1]:
            grad_base = grad_out.view(ctx.base_shape)
        grad_blocks: list[torch.Tensor | None] = [None] * len(ctx.block_shapes)
        # Earlier blocks, delivered by earlier reads, may need this read's share.
        total = ctx.accumulator.add(lo, masks.t().to(grad_flat.dtype), grad_flat, n_writers)
        for i, shape in enumerate(ctx.block_shapes):
            if ctx.needs_input_grad[6 + i]:
                grad_blocks[i] = total[start : start + shape[0]].view(shape)
            start += shape[0]
        return (grad_masks, grad_base, None, None, None, None, *grad_blocks)


class ResidualMixer:
    """The residual stream of one forward pass.

    `edge_masks` None is the plain model: every reader reads the full clean residual,
    and a site returns it once, shaped (1, B, S, D), for all its readers. Otherwise a
    site returns (readers, B, S, D). `corrupted` holds the writers' outputs on the
    corrupted input (W, B, S, D), broadcastable in B and S (mean ablation), or None
    for zero ablation. `always_on` is added to every reader and is not a writer (the
    embeddings when they are not nodes). `mask_grad_deltas` (W, B, S, D), if given,
    replaces x_w - c_w in the mask gradient only (EAP-IG over inputs).
    `neuron_masks` (W, D), if given (masked forwards only), keeps each output
    dimension of a writer apart: a writer writes c_w + n_w * (x_w - c_w) (neuron circuits).
    """

    def __init__(
        self,
        graph: CircuitGraph,
        always_on: torch.Tensor,
        edge_masks: torch.Tensor | None = None,
        corrupted: torch.Tensor | None = None,
        keep_writer_states: bool = False,
        mask_grad_deltas: torch.Tensor | None = None,
        neuron_masks: torch.Tensor | None = None,
    ) -> None:
        self.graph = graph
        self.edge_masks = edge_masks
        self.corrupted = corrupted
        self.mask_grad_deltas = mask_grad_deltas
        self.neuron_masks = neuron_masks
        self.n_written = 0
        self.new_blocks: list[torch.Tensor] = []  # written since the last read
        self.new_blocks_start = 0
        self.accumulator = _GradientAccumulator()
        # A read of the next site's readers over this site's prefix, finished at that site.
        # (that site, its partial input, C_p then, the prefix read)
        self.pending: tuple[Site, torch.Tensor, torch.Tensor, int] | None = None
        if corrupted is not None and corrupted.shape[0] != graph.n_writers:
            raise ValueError(
                f"corr_x holds {corrupted.shape[0]} writers but this model has {graph.n_writers}; "
                "was it produced by a model with the same graph (embedding nodes included)?"
            )
        shape = (graph.n_writers, *always_on.shape)
        need_buffer = edge_masks is not None or keep_writer_states
        self.buffer = always_on.new_empty(shape) if need_buffer else None
        self.residual = always_on
        self.first_layer = 0  # the layer the model starts at (see `resume`)
        if edge_masks is not None:
            self.residual = always_on.detach().clone()  # C_p: corrupted prefix sum plus kept inputs

    @property
    def masked(self) -> bool:
        return self.edge_masks is not None

    def resume(self, first_layer: int, deltas: torch.Tensor, corrupted_sum: torch.Tensor | None) -> None:
        """Start a masked forward at `first_layer`, whose site has the writers of
        `deltas` (p, B, S, D) before it: their x_w - c_w as an earlier forward wrote
        them, and the sum of their corrupted outputs (None: zero ablation). Valid
        while no reader below that layer changed its masks since (ACDC's prefix
        cache); the model then runs only the layers from `first_layer` on."""
        if self.edge_masks is None or self.n_written:
            raise RuntimeError("only a fresh masked forward can resume at a layer")
        p = deltas.shape[0]
        self.buffer[:p] = deltas
        if corrupted_sum is not None:
            self.residual += corrupted_sum.expand_as(self.residual)
        self.n_written = self.new_blocks_start = p
        self.first_layer = first_layer

    @property
    def per_writer(self) -> bool:
        """Whether writers must be written one by one (else their sum will do)."""
        return self.buffer is not None

    def write(self, block: torch.Tensor, count: int) -> None:
        """Append the outputs of the next `count` writers, shaped (count, B, S, D).

        Where writers need not be kept apart (`per_writer` false), a block may hold
        their sum instead, shaped (1, B, S, D).
        """
        if block.shape[0] != count and (self.per_writer or block.shape[0] != 1):
            raise ValueError(f"a block of {block.shape[0]} outputs was written for {count} writers")
        lo, hi = self.n_written, self.n_written + count
        if hi > self.graph.n_writers:
            raise RuntimeError("more writers written than the graph has")
        if self.edge_masks is None:
            if self.buffer is not None:
                self.buffer[lo:hi] = block.detach()
            self.residual = self.residual + block.sum(0)
        else:
            if self.neuron_masks is not None:
                n = self.neuron_masks[lo:hi, None, None, :].to(block.dtype)
                block = block * n if self.corrupted is None else torch.lerp(self.corrupted[lo:hi].to(block.dtype), block, n)
            with torch.no_grad():
                if self.corrupted is None:
                    self.buffer[lo:hi] = block
                else:
                    corr = self.corrupted[lo:hi].to(block.dtype)
                    torch.sub(block, corr, out=self.buffer[lo:hi])
                    self.residual += corr.sum(0).expand_as(self.residual)
            self.new_blocks.append(block)
        self.n_written = hi

    def read(self, site: Site) -> torch.Tensor:
        """The inputs of the readers at `site`."""
        if self.n_written != site.n_writers_before:
            raise RuntimeError(
                f"site {site.name} expects {site.n_writers_before} writers before it, {self.n_written} were written"
            )
        if self.edge_masks is None:
            return self.residual.unsqueeze(0)
        if self.pending is not None and self.pending[0] is site:
            _, partial, base_then, lo = self.pending
            self.pending = None
            if lo == site.n_writers_before:
                return partial  # nothing written in between (a parallel MLP)
            return self._read(site, lo, partial + (self.residual - base_then))
        following = self._following(site)
        if following is None:
            return self._read(site, 0, self.residual)
        # One pass over the prefix for this site's readers and the next site's (the MLP
        # after an attention): the next site then adds only the writers in between.
        joint = self._read(site, 0, self.residual, stop=following.reader_stop)
        self.pending = (following, joint[site.n_readers :], self.residual.clone(), site.n_writers_before)
        return joint[: site.n_readers]

    def _following(self, site: Site) -> Site | None:
        """The next site, if its readers directly follow this site's (pairable)."""
        sites = self.graph.sites
        i = self.graph.site_index[site.name]
        if site.kind == "attn" and i + 1 < len(sites):
            nxt = sites[i + 1]
            if nxt.kind == "mlp" and nxt.reader_start == site.reader_stop:
                return nxt
        return None

    def _read(self, site: Site, lo: int, base: torch.Tensor, stop: int | None = None) -> torch.Tensor:
        """base + masks @ buffer[lo:p] for the readers site.reader_start..stop."""
        p = site.n_writers_before
        masks = self.edge_masks[site.reader_start : stop or site.reader_stop, lo:p]
        layout = (lo, self.new_blocks_start, self.graph.n_writers)
        new_blocks, self.new_blocks, self.new_blocks_start = self.new_blocks, [], self.n_written
        grad_slice = None if self.mask_grad_deltas is None else self.mask_grad_deltas[lo:p]
        return _SiteRead.apply(masks, base, self.buffer[lo:p], grad_slice, self.accumulator, layout, *new_blocks)

    def writer_states(self) -> torch.Tensor:
        """Every writer's clean output, (W, B, S, D): the `corr_x` of a later pruned run."""
        if self.edge_masks is not None:
            raise RuntimeError("writer states are recorded by the plain (unmasked) forward")
        return self.buffer
