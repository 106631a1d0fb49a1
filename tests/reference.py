"""Literal, slow implementations of method.md §2 (GPT-2, Llama; any architecture), to check the fast paths.

Every reader sums every writer before it, one by one:
    in_r = sum_w [ m_rw * x~_w + (1 - m_rw) * c_w ],   x~_w = z_w x_w + (1 - z_w) c_w
plus the embeddings when they are not nodes. No buffers, no prefix sums, no
custom autograd.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def reference_fpt2_logits(model, input_ids, edge_masks, node_masks, corr_x=None):
    """Logits of an FPT2LMHeadModel's circuit, given explicit (readers x writers) edge
    masks and per-writer node masks."""
    tf = model.transformer
    cfg = model.config
    graph = model.circuit_graph
    B, S = input_ids.shape
    H = cfg.n_head
    D = cfg.n_embd
    dh = D // H
    tok = tf.wte(input_ids)
    pos = tf.wpe(torch.arange(S))[None].expand_as(tok)
    clean: list[torch.Tensor] = []  # x~_w, node mask applied
    corrupted: list[torch.Tensor] = []

    def add_writer(x):
        w = len(clean)
        c = torch.zeros_like(x) if corr_x is None else corr_x[w]
        z = node_masks[w]
        clean.append(z * x + (1 - z) * c)
        corrupted.append(c)

    if cfg.with_embedding_nodes:
        add_writer(tok)
        add_writer(pos)
        always = torch.zeros_like(tok)
    else:
        always = tok + pos

    def read(reader_name):
        r = graph.reader_index[reader_name]
        total = always
        for w in range(len(clean)):
            m = edge_masks[r, w]
            total = total + m * clean[w] + (1 - m) * corrupted[w]
        return total

    causal = torch.tril(torch.ones(S, S, dtype=torch.bool))
    for layer, block in enumerate(tf.h):
        W = block.attn.c_attn.weight
        b = block.attn.c_attn.bias
        qs, ks, vs = [], [], []
        for h in range(H):
            for kind, store, offset in (("q", qs, 0), ("k", ks, D), ("v", vs, 2 * D)):
                x = block.ln_1(read(f"a{layer}.h{h}.{kind}"))
                cols = slice(offset + h * dh, offset + (h + 1) * dh)
                store.append(x @ W[:, cols] + b[cols])
        outs = []
        for h in range(H):
            scores = qs[h] @ ks[h].transpose(-1, -2) / math.sqrt(dh)
            scores = scores.masked_fill(~causal, float("-inf"))
            z = F.softmax(scores, dim=-1) @ vs[h]
            rows = slice(h * dh, (h + 1) * dh)
            outs.append(z @ block.attn.c_proj.weight[rows] + block.attn.c_proj.bias / H)
        for out in outs:
            add_writer(out)
        add_writer(block.mlp(block.ln_2(read(f"m{layer}"))))
    return model.lm_head(tf.ln_f(read("resid_post")))


def _rms_norm(x, norm):
    """Llama's RMSNorm, written out."""
    return norm.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon))


def _rotate(x, cos, sin):
    """Rotary embedding of (B, S, dh) by cos/sin (B, S, dh): x cos + rotate_half(x) sin."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def reference_fllama_logits(model, input_ids, edge_masks, node_masks, corr_x=None):
    """Logits of an FLlamaForCausalLM's circuit, given explicit (readers x writers)
    edge masks and per-writer node masks. Every Q reader, every K/V reader of a
    key/value head and every MLP input is mixed and normed on its own; query head h
    attends with the K and V of key/value head h // (n_heads / n_kv_heads)."""
    llama = model.model
    cfg = model.config
    graph = model.circuit_graph
    B, S = input_ids.shape
    H, G, dh = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    group = H // G
    embeds = llama.embed_tokens(input_ids)
    cos, sin = llama.rotary_emb(embeds, torch.arange(S)[None])
    clean: list[torch.Tensor] = []  # x~_w, node mask applied
    corrupted: list[torch.Tensor] = []

    def add_writer(x):
        w = len(clean)
        c = torch.zeros_like(x) if corr_x is None else corr_x[w]
        z = node_masks[w]
        clean.append(z * x + (1 - z) * c)
        corrupted.append(c)

    if cfg.with_embedding_nodes:
        add_writer(embeds)
        always = torch.zeros_like(embeds)
    else:
        always = embeds

    def read(reader_name):
        r = graph.reader_index[reader_name]
        total = always
        for w in range(len(clean)):
            m = edge_masks[r, w]
            total = total + m * clean[w] + (1 - m) * corrupted[w]
        return total

    def head_input(proj, reader_name, head, norm):
        rows = slice(head * dh, (head + 1) * dh)
        out = _rms_norm(read(reader_name), norm) @ proj.weight[rows].t()
        return out if proj.bias is None else out + proj.bias[rows]

    causal = torch.tril(torch.ones(S, S, dtype=torch.bool))
    for layer, block in enumerate(llama.layers):
        attn, ln = block.self_attn, block.input_layernorm
        qs = [_rotate(head_input(attn.q_proj, f"a{layer}.h{h}.q", h, ln), cos, sin) for h in range(H)]
        ks = [_rotate(head_input(attn.k_proj, f"a{layer}.h{g}.k", g, ln), cos, sin) for g in range(G)]
        vs = [head_input(attn.v_proj, f"a{layer}.h{g}.v", g, ln) for g in range(G)]
        outs = []
        for h in range(H):
            scores = qs[h] @ ks[h // group].transpose(-1, -2) / math.sqrt(dh)
            scores = scores.masked_fill(~causal, float("-inf"))
            z = F.softmax(scores, dim=-1) @ vs[h // group]
            out = z @ attn.o_proj.weight[:, h * dh : (h + 1) * dh].t()
            outs.append(out if attn.o_proj.bias is None else out + attn.o_proj.bias / H)
        for out in outs:
            add_writer(out)
        mlp = block.mlp
        x = _rms_norm(read(f"m{layer}"), block.post_attention_layernorm)
        add_writer(mlp.down_proj(mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x)))
    return model.lm_head(_rms_norm(read("resid_post"), llama.norm))


def reference_logits(model, input_ids, edge_masks, node_masks, corr_x=None):
    """Logits of any circuit LM on the architecture layer (src/modeling/modeling_circuit),
    given explicit (readers x writers) edge masks and per-writer node masks.

    Every reader's input is summed writer by writer over the writers before its site
    (so a parallel MLP reads none of its layer's heads). A layer's heads are computed
    by the layer's own `attend` from its readers' inputs stacked in graph order, its
    MLP by `feed_forward`: the attention's per-reader path is checked against
    transformers separately (tests/test_conformance.py, with hooks); this checks the
    kernel (buffer, prefix sums, custom autograd) and the routing of readers.
    """
    from edge_pruning.attention import attention_mask_from_padding
    from modeling.modeling_circuit import LayerInputs

    body, graph = model.base_model, model.circuit_graph
    S = input_ids.shape[1]
    position_ids = torch.arange(S)[None]
    embeds = body.embed(input_ids, None, position_ids)
    clean: list[torch.Tensor] = []  # x~_w, node mask applied
    corrupted: list[torch.Tensor] = []

    def add_writer(x):
        w = len(clean)
        c = torch.zeros_like(x) if corr_x is None else corr_x[w]
        z = node_masks[w]
        clean.append(z * x + (1 - z) * c)
        corrupted.append(c)

    if body.config.with_embedding_nodes:
        for e in embeds:
            add_writer(e)
        always = torch.zeros_like(embeds[0])
    else:
        always = sum(embeds[1:], embeds[0])

    def read(r):
        total = always
        for w in range(int(graph.reader_prefix[r])):
            m = edge_masks[r, w]
            total = total + m * clean[w] + (1 - m) * corrupted[w]
        return total

    windows = {layer.circuit_attention.window for layer in body.blocks()}
    masks = {w: attention_mask_from_padding(None, S, body.causal, w) for w in windows}
    inputs = LayerInputs(body.position_embeddings(embeds[0], position_ids), masks, body.causal)
    for layer, block in enumerate(body.blocks()):
        site = graph.attn_site(layer)
        x = torch.stack([read(r) for r in range(site.reader_start, site.reader_stop)])
        for head in block.attend(x, inputs, per_head=True):
            add_writer(head)
        add_writer(block.feed_forward(read(graph.reader_index[f"m{layer}"])))
    hidden = body.final_norm(read(graph.reader_index["resid_post"]))
    return model.final_logits(model.get_output_embeddings()(hidden))
