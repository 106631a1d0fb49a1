"""Compile a task with Tracr and export its weights to plain numpy.

Why: the PyTorch side of the project must not depend on jax/haiku/tracr at
run time, and must not depend on Tracr's labels. The export is a pickle of a
plain ``dict`` (only ``str``/``int``/``float``/``bool``/``None``, lists,
dicts and ``numpy.ndarray``), so ``pickle.load`` works without importing
``tracrx``. :class:`TracrWeights` is the typed view used inside ``tracrx``.

Format (``FORMAT_VERSION = "tracrx-weights-v1"``); shapes use
V = input vocab size (incl. BOS and PAD), P = max_seq_len + 1 positions (BOS
is position 0), D = d_model, H = n_heads (max over layers, as in Tracr; unused
heads are all-zero), K = d_head (query/key and value size, equal in Tracr),
M = d_mlp (max over layers; unused units are zero), O = output size::

  format            str
  task              str
  config            dict, see :class:`TracrConfig` (dataclasses.asdict)
  tok_embed         float32 [V, D]
  pos_embed         float32 [P, D]   row 0 (BOS position) is all zero
  layers            list of n_layers dicts, each:
      W_Q, W_K, W_V float32 [H, D, K]    q_h = x @ W_Q[h] + b_Q[h]
      b_Q, b_K, b_V float32 [H, K]
      W_O           float32 [H, K, D]    attn_out = sum_h z_h @ W_O[h] + b_O
      b_O           float32 [D]          (one bias for the whole block)
      W_in          float32 [D, M]       mlp = relu(x @ W_in + b_in) @ W_out + b_out
      b_in          float32 [M]
      W_out         float32 [M, D]
      b_out         float32 [D]
  unembed           float32 [D, O]     logits = resid_final @ unembed
  input_vocab       dict token -> id   (tokens are int or str)
  output_vocab      dict value -> id   (categorical) or None (numerical)
  bos_token, bos_id, pad_token, pad_id
  residual_labels   list[str] of length D: Tracr's residual basis, with the
                    process counter suffix stripped (e.g. "opp_idx:3", "one")
  empty_blocks      list[str]: writer names whose weights are all zero
                    (e.g. "a1.h0", "m3"); they exist and output zero.

All arrays are float32 (Tracr's own dtype); every bias of both models is
zero but is exported anyway. For edge-level (per-head) writers, head h writes
``z_h @ W_O[h] + b_O / n_heads``. PAD has an id but Tracr never masks it.
See :mod:`tracrx.reference` for the exact forward pass.
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Hashable, List, Optional, Union

import numpy as np

if TYPE_CHECKING:  # loading an export must not need tracr/jax
    from tracrx.programs import TaskSpec

FORMAT_VERSION = "tracrx-weights-v1"
PICKLE_PROTOCOL = 4


@dataclasses.dataclass(frozen=True)
class TracrConfig:
    """Architecture of a compiled Tracr model (the ``config`` entry).

    Attributes:
      n_layers: transformer layers; each is one attention block then one MLP.
      n_heads: heads per attention block (Tracr pads every layer to the max).
      heads_used: heads with nonzero weights, per layer.
      d_model, d_head, d_mlp: residual width, per-head q/k/v width, MLP width.
      max_seq_len: Tracr's max_seq_len (token positions excluding BOS).
      n_positions: rows of pos_embed = max_seq_len + 1 (BOS at position 0).
      vocab_size: rows of tok_embed (input tokens + BOS + PAD).
      n_outputs: columns of unembed.
      causal: attention uses a causal (lower-triangular) mask.
      categorical_output: logits -> argmax class if True, else the single
        column of logits is the numeric output.
      layer_norm: always False for Tracr.
      activation: MLP nonlinearity, always "relu".
      attn_scale: attention logits are multiplied by this (1/sqrt(d_head)).
      mask_value: value that masked attention logits are set to.
      block_order: the Tracr block sequence, e.g. ["attn", "mlp", "attn", ...]
        (always alternating, starting with attn; empty blocks included).
      n_tokens: input length of the task's data (excluding BOS).
    """

    n_layers: int
    n_heads: int
    heads_used: List[int]
    d_model: int
    d_head: int
    d_mlp: int
    max_seq_len: int
    n_positions: int
    vocab_size: int
    n_outputs: int
    causal: bool
    categorical_output: bool
    layer_norm: bool
    activation: str
    attn_scale: float
    mask_value: float
    block_order: List[str]
    n_tokens: int


@dataclasses.dataclass
class LayerWeights:
    """Weights of one transformer layer, split per head (see module doc)."""

    W_Q: np.ndarray
    b_Q: np.ndarray
    W_K: np.ndarray
    b_K: np.ndarray
    W_V: np.ndarray
    b_V: np.ndarray
    W_O: np.ndarray
    b_O: np.ndarray
    W_in: np.ndarray
    b_in: np.ndarray
    W_out: np.ndarray
    b_out: np.ndarray


@dataclasses.dataclass
class TracrWeights:
    """Typed view of an exported model (the pickle holds ``to_dict()``)."""

    task: str
    config: TracrConfig
    tok_embed: np.ndarray
    pos_embed: np.ndarray
    layers: List[LayerWeights]
    unembed: np.ndarray
    input_vocab: Dict[Hashable, int]
    output_vocab: Optional[Dict[Hashable, int]]
    bos_token: str
    bos_id: int
    pad_token: str
    pad_id: int
    residual_labels: List[str]
    empty_blocks: List[str]

    def to_dict(self) -> Dict[str, Any]:
        """Plain-python form stored in the pickle (no tracrx classes)."""
        return {
            "format": FORMAT_VERSION,
            "task": self.task,
            "config": dataclasses.asdict(self.config),
            "tok_embed": self.tok_embed,
            "pos_embed": self.pos_embed,
            "layers": [dataclasses.asdict(layer) for layer in self.layers],
            "unembed": self.unembed,
            "input_vocab": dict(self.input_vocab),
            "output_vocab": None if self.output_vocab is None else dict(self.output_vocab),
            "bos_token": self.bos_token,
            "bos_id": self.bos_id,
            "pad_token": self.pad_token,
            "pad_id": self.pad_id,
            "residual_labels": list(self.residual_labels),
            "empty_blocks": list(self.empty_blocks),
        }

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "TracrWeights":
        if d.get("format") != FORMAT_VERSION:
            raise ValueError(f"unsupported Tracr export format {d.get('format')!r}")
        return cls(
            task=d["task"],
            config=TracrConfig(**d["config"]),
            tok_embed=d["tok_embed"],
            pos_embed=d["pos_embed"],
            layers=[LayerWeights(**layer) for layer in d["layers"]],
            unembed=d["unembed"],
            input_vocab=d["input_vocab"],
            output_vocab=d["output_vocab"],
            bos_token=d["bos_token"],
            bos_id=d["bos_id"],
            pad_token=d["pad_token"],
            pad_id=d["pad_id"],
            residual_labels=d["residual_labels"],
            empty_blocks=d["empty_blocks"],
        )

    def encode(self, tokens: List[Hashable], add_bos: bool = True) -> List[int]:
        """Token list (without BOS if ``add_bos``) -> input ids."""
        seq = [self.bos_token, *tokens] if add_bos else list(tokens)
        return [self.input_vocab[t] for t in seq]

    def decode_outputs(self, logits: np.ndarray) -> List[Hashable]:
        """Logits [T, O] of one sequence -> decoded outputs (BOS position kept)."""
        if self.config.categorical_output:
            inverse = {i: v for v, i in self.output_vocab.items()}
            return [inverse[int(i)] for i in np.argmax(logits, axis=-1)]
        return [float(x) for x in logits[..., 0]]


def weights_differences(a: TracrWeights, b: TracrWeights) -> List[str]:
    """Names of the entries where two exports differ (empty list: identical).

    Arrays must match exactly in dtype, shape and every value.
    """
    diffs: List[str] = []

    def walk(x: Any, y: Any, path: str) -> None:
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            same = (isinstance(x, np.ndarray) and isinstance(y, np.ndarray)
                    and x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y))
            if not same:
                diffs.append(path)
        elif isinstance(x, dict) and isinstance(y, dict):
            if list(x) != list(y):
                diffs.append(path + " (keys)")
            else:
                for k in x:
                    walk(x[k], y[k], f"{path}.{k}")
        elif isinstance(x, list) and isinstance(y, list):
            if len(x) != len(y):
                diffs.append(path + " (length)")
            else:
                for i, (u, v) in enumerate(zip(x, y)):
                    walk(u, v, f"{path}[{i}]")
        elif type(x) is not type(y) or x != y:
            diffs.append(path)

    walk(a.to_dict(), b.to_dict(), "weights")
    return diffs


def save_weights(weights: TracrWeights, path: Union[str, Path]) -> None:
    """Write the plain-dict pickle with a fixed protocol (stable bytes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(weights.to_dict(), f, protocol=PICKLE_PROTOCOL)


def load_weights(path: Union[str, Path]) -> TracrWeights:
    """An export of ours, or a pickle in the original Edge Pruning code's format (its
    task named by the file name, e.g. `reverse.pkl`)."""
    with open(path, "rb") as f:
        d = pickle.load(f)
    if isinstance(d, dict) and ORIGINAL_PICKLE_KEYS <= set(d):
        return from_original_dict(d, Path(path).name.split(".")[0].split("_")[0])
    return TracrWeights.from_dict(d)


# ------------------------------------------------------------------ compile


@dataclasses.dataclass
class CompiledTask:
    """A compiled task: Tracr's assembled model plus our numpy export."""

    spec: TaskSpec
    model: Any  # tracr.compiler.assemble.AssembledTransformerModel
    weights: TracrWeights


def compile_task(spec: TaskSpec) -> CompiledTask:
    """Compile ``spec``'s program with Tracr and export it deterministically."""
    from tracr.compiler import compiling  # heavy import (jax), done lazily

    from tracrx.programs import BOS, PAD, assign_deterministic_ids, program_names

    program = spec.build_program()
    assign_deterministic_ids(program)
    model = compiling.compile_rasp_to_model(
        program,
        vocab=set(spec.vocab),
        max_seq_len=spec.max_seq_len,
        causal=spec.causal,
        compiler_bos=BOS,
        compiler_pad=PAD,
    )
    names = program_names(program)
    weights = export_model(model, spec, names)
    return CompiledTask(spec=spec, model=model, weights=weights)


def _strip_label(label: str, names: Dict[str, str]) -> str:
    """Replace RASP labels (name_id) inside a residual label by plain names."""
    # Longest labels first so "opp_idx_minus_1_3" is not hit by "opp_idx_4".
    for rasp_label in sorted(names, key=len, reverse=True):
        if label == rasp_label or label.startswith(rasp_label + ":") or label.startswith(rasp_label + "_"):
            return names[rasp_label] + label[len(rasp_label):]
    return label


def _unembed_matrix(model: Any) -> np.ndarray:
    """The residual -> output projection, read off Tracr's own unembed module.

    Tracr's unembed (``x @ project(residual_space, output_space)``) is a
    haiku module without parameters, so it is absent from ``model.params``.
    We build the compiled model inside ``hk.transform`` and push the identity
    matrix through its ``unembed`` (argmax off), which returns the matrix
    itself: ``[D, O]`` for categorical outputs, ``[D]`` (-> ``[D, 1]``) for
    numerical ones. No Tracr code is copied or changed.
    """
    import haiku as hk
    import jax.numpy as jnp

    d_model = len(model.residual_labels)

    @hk.without_apply_rng
    @hk.transform
    def unembed(x):
        return model.get_compiled_model().unembed(x, use_unembed_argmax=False)

    eye = jnp.eye(d_model, dtype=jnp.float32)[None]  # [B=1, T=D, D]
    mat = np.asarray(unembed.apply(unembed.init(None, eye), eye))[0]
    if mat.ndim == 1:
        mat = mat[:, None]
    return np.ascontiguousarray(mat, dtype=np.float32)


def _layers_from_params(get, n_layers: int, H: int, K: int, d_model: int):
    """Per-head layer weights from haiku-named parameters (`get(path, "w"|"b")`), with
    the heads each layer uses and the writers whose weights are all zero."""
    layers: List[LayerWeights] = []
    heads_used: List[int] = []
    empty: List[str] = []
    for L in range(n_layers):
        a = f"transformer/layer_{L}/attn"
        m = f"transformer/layer_{L}/mlp"

        def per_head_in(name: str) -> np.ndarray:  # [D, H*K] -> [H, D, K]
            return np.asarray(get(f"{a}/{name}", "w")).reshape(d_model, H, K).transpose(1, 0, 2)

        lw = LayerWeights(
            W_Q=per_head_in("query"),
            b_Q=np.asarray(get(f"{a}/query", "b")).reshape(H, K),
            W_K=per_head_in("key"),
            b_K=np.asarray(get(f"{a}/key", "b")).reshape(H, K),
            W_V=per_head_in("value"),
            b_V=np.asarray(get(f"{a}/value", "b")).reshape(H, K),
            W_O=np.asarray(get(f"{a}/linear", "w")).reshape(H, K, d_model),
            b_O=get(f"{a}/linear", "b"),
            W_in=get(f"{m}/linear_1", "w"),
            b_in=get(f"{m}/linear_1", "b"),
            W_out=get(f"{m}/linear_2", "w"),
            b_out=get(f"{m}/linear_2", "b"),
        )
        lw = LayerWeights(**{k: np.ascontiguousarray(v, dtype=np.float32)
                             for k, v in dataclasses.asdict(lw).items()})
        used = 0
        for h in range(H):
            nonzero = any(np.any(w[h] != 0) for w in (lw.W_Q, lw.W_K, lw.W_V, lw.W_O))
            if nonzero:
                used = h + 1
            else:
                empty.append(f"a{L}.h{h}")
        heads_used.append(used)
        if not (np.any(lw.W_in != 0) or np.any(lw.W_out != 0) or np.any(lw.b_out != 0)):
            empty.append(f"m{L}")
        layers.append(lw)
    return layers, heads_used, empty


ORIGINAL_PICKLE_KEYS = {"model_params", "config", "vocab"}


def from_original_dict(d: Dict[str, Any], task: str) -> TracrWeights:
    """A Tracr model pickled in the original Edge Pruning code's format:
    `{"model_params": {"token_embed_embeddings", "pos_embed_embeddings",
    "transformer/layer_{l}/attn/{query,key,value,linear}_{w,b}",
    "transformer/layer_{l}/mlp/linear_{1,2}_{w,b}"}, "config": {num_layers, num_heads,
    mlp_hidden_size, max_seq_len, layer_norm, causal, bos, pad, ...}, "vocab": {token: id},
    "unembedding_mtx": [D, O]}`. It names no task and no output vocabulary: outputs are
    categorical when O > 1, decoded as class indices."""
    missing = ORIGINAL_PICKLE_KEYS - set(d)
    if missing:
        raise ValueError(f"not an original Tracr pickle: no {sorted(missing)}")
    c, mp = d["config"], d["model_params"]
    tok_embed = np.ascontiguousarray(mp["token_embed_embeddings"], dtype=np.float32)
    pos_embed = np.ascontiguousarray(mp["pos_embed_embeddings"], dtype=np.float32)
    d_model = tok_embed.shape[1]
    H = int(c["num_heads"])
    K = np.asarray(mp["transformer/layer_0/attn/query_w"]).shape[1] // H
    layers, heads_used, empty = _layers_from_params(lambda name, kind: mp[f"{name}_{kind}"], int(c["num_layers"]), H, K, d_model)
    if d.get("unembedding_mtx") is None:
        raise ValueError("the original Tracr pickle has no unembedding_mtx")
    unembed = np.asarray(d["unembedding_mtx"], dtype=np.float32).reshape(d_model, -1)
    categorical = unembed.shape[1] > 1
    vocab = {t: int(i) for t, i in d["vocab"].items()}
    config = TracrConfig(
        n_layers=int(c["num_layers"]),
        n_heads=H,
        heads_used=heads_used,
        d_model=d_model,
        d_head=K,
        d_mlp=int(c["mlp_hidden_size"]),
        max_seq_len=int(c["max_seq_len"]),
        n_positions=pos_embed.shape[0],
        vocab_size=tok_embed.shape[0],
        n_outputs=unembed.shape[1],
        causal=bool(c["causal"]),
        categorical_output=categorical,
        layer_norm=bool(c["layer_norm"]),
        activation="relu",
        attn_scale=float(1.0 / np.sqrt(K)),
        mask_value=-1e30,
        block_order=["attn", "mlp"] * int(c["num_layers"]),
        n_tokens=int(c["max_seq_len"]) - 1,
    )
    return TracrWeights(
        task=task,
        config=config,
        tok_embed=tok_embed,
        pos_embed=pos_embed,
        layers=layers,
        unembed=np.ascontiguousarray(unembed),
        input_vocab=vocab,
        output_vocab={i: i for i in range(unembed.shape[1])} if categorical else None,
        bos_token=c["bos"],
        bos_id=vocab[c["bos"]],
        pad_token=c["pad"],
        pad_id=vocab[c["pad"]],
        residual_labels=[f"r{i}" for i in range(d_model)],
        empty_blocks=empty,
    )


def export_model(model: Any, spec: TaskSpec, names: Dict[str, str]) -> TracrWeights:
    """Turn an ``AssembledTransformerModel`` into :class:`TracrWeights`."""
    cfg = model.model_config
    params = {k: {kk: np.asarray(vv) for kk, vv in v.items()} for k, v in model.params.items()}
    tok_embed = params["token_embed"]["embeddings"].astype(np.float32)
    pos_embed = params["pos_embed"]["embeddings"].astype(np.float32)
    d_model = tok_embed.shape[1]
    H, K = cfg.num_heads, cfg.key_size

    layers, heads_used, empty = _layers_from_params(lambda name, kind: params[name][kind], cfg.num_layers, H, K, d_model)

    unembed = _unembed_matrix(model)
    output_vocab = dict(model.output_encoder.encoding_map) if spec.categorical_output else None
    if spec.categorical_output and len(output_vocab) != unembed.shape[1]:
        raise RuntimeError("output encoder and unembedding disagree in size")

    in_enc = model.input_encoder
    config = TracrConfig(
        n_layers=cfg.num_layers,
        n_heads=H,
        heads_used=heads_used,
        d_model=d_model,
        d_head=K,
        d_mlp=cfg.mlp_hidden_size,
        max_seq_len=spec.max_seq_len,
        n_positions=pos_embed.shape[0],
        vocab_size=tok_embed.shape[0],
        n_outputs=unembed.shape[1],
        causal=bool(cfg.causal),
        categorical_output=spec.categorical_output,
        layer_norm=bool(cfg.layer_norm),
        activation="relu",
        attn_scale=float(1.0 / np.sqrt(K)),
        mask_value=-1e30,
        block_order=["attn", "mlp"] * cfg.num_layers,
        n_tokens=spec.n_tokens,
    )
    return TracrWeights(
        task=spec.name,
        config=config,
        tok_embed=np.ascontiguousarray(tok_embed),
        pos_embed=np.ascontiguousarray(pos_embed),
        layers=layers,
        unembed=unembed,
        input_vocab=dict(in_enc.encoding_map),
        output_vocab=output_vocab,
        bos_token=in_enc.bos_token,
        bos_id=int(in_enc.bos_encoding),
        pad_token=in_enc.pad_token,
        pad_id=int(in_enc.pad_encoding),
        residual_labels=[_strip_label(lab, names) for lab in model.residual_labels],
        empty_blocks=empty,
    )
