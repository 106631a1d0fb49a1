"""Tracr export: determinism, numpy reference vs Tracr's jax model, ground truth.

Each task is compiled once per module (a few seconds each, CPU).
"""

import json
import pickle
from pathlib import Path

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tracrx import circuit, data, reference
from tracrx.artifacts import dataset_splits, ground_truth, targets_array
from tracrx.export import compile_task, load_weights, weights_differences
from tracrx.programs import TASKS

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "data" / "tracr_models"
DATASETS = ROOT / "data" / "datasets"
TASK_NAMES = sorted(TASKS)
ATOL = 1e-5


@pytest.fixture(scope="module", params=TASK_NAMES)
def compiled(request):
    return compile_task(TASKS[request.param])


@pytest.fixture(scope="module")
def tracr_run(compiled):
    """Tracr's own forward on every input: (residuals, logits, argmax-or-values)."""
    model = compiled.model
    ids = data.all_input_ids(compiled.spec)

    @hk.without_apply_rng
    @hk.transform
    def raw_logits(tokens):
        # Tracr's compiled model with its unembed left un-argmaxed.
        cm = model.get_compiled_model()
        cm.use_unembed_argmax = False
        return cm(tokens, use_dropout=False).unembedded_output

    out = jax.jit(model.forward)(model.params, jnp.asarray(ids))
    logits = np.asarray(jax.jit(raw_logits.apply)(model.params, jnp.asarray(ids)))
    if logits.ndim == 2:
        logits = logits[..., None]
    residuals = [np.asarray(r) for r in out.transformer_output.residuals]
    return ids, residuals, logits, np.asarray(out.unembedded_output)


def _exprs(program):
    out, stack = [], [program]
    while stack:
        e = stack.pop()
        out.append(e)
        stack.extend(e.children)
    return out


def test_committed_pickle_equals_fresh_compile(compiled):
    committed = load_weights(MODELS / f"{compiled.spec.name}.tracr.pkl")
    assert weights_differences(committed, compiled.weights) == []


def test_compiling_twice_is_identical(compiled):
    again = compile_task(compiled.spec)
    assert weights_differences(again.weights, compiled.weights) == []
    assert again.model.residual_labels == compiled.model.residual_labels


def test_pickle_is_plain_python(compiled):
    """Loading the export needs numpy only, not tracr/tracrx classes."""
    raw = pickle.loads((MODELS / f"{compiled.spec.name}.tracr.pkl").read_bytes())

    def check(x):
        if isinstance(x, dict):
            for k, v in x.items():
                assert isinstance(k, (str, int)), k
                check(v)
        elif isinstance(x, list):
            for v in x:
                check(v)
        else:
            assert x is None or isinstance(x, (str, int, float, bool, np.ndarray)), type(x)

    check(raw)
    assert raw["format"] == "tracrx-weights-v1"


def test_export_metadata(compiled):
    w, model, spec = compiled.weights, compiled.model, compiled.spec
    c = w.config
    assert w.input_vocab == model.input_encoder.encoding_map == data.input_vocab(spec)
    assert w.bos_id == w.input_vocab["BOS"] and w.pad_id == w.input_vocab["compiler_pad"]
    if spec.categorical_output:
        assert w.output_vocab == model.output_encoder.encoding_map == data.output_vocab(spec)
    else:
        assert w.output_vocab is None and c.n_outputs == 1
    assert c.causal == spec.causal == model.model_config.causal
    assert len(w.residual_labels) == c.d_model == len(set(w.residual_labels))
    # Residual labels use plain op names, not Tracr's counter-suffixed labels.
    names = {e.name for e in _exprs(spec.build_program())} | {"one"}
    names |= {f"{n}_selector_width_attn_output" for n in names}
    assert {lab.split(":")[0] for lab in w.residual_labels} <= names
    assert w.tok_embed.shape == (c.vocab_size, c.d_model)
    assert w.pos_embed.shape == (c.max_seq_len + 1, c.d_model) and not w.pos_embed[0].any()
    assert w.unembed.shape == (c.d_model, c.n_outputs)
    for lw in w.layers:
        assert lw.W_Q.shape == lw.W_K.shape == lw.W_V.shape == (c.n_heads, c.d_model, c.d_head)
        assert lw.W_O.shape == (c.n_heads, c.d_head, c.d_model)
        assert lw.W_in.shape == (c.d_model, c.d_mlp) and lw.W_out.shape == (c.d_mlp, c.d_model)


def test_reference_forward_matches_tracr(compiled, tracr_run):
    w, spec = compiled.weights, compiled.spec
    ids, tracr_residuals, tracr_logits, tracr_out = tracr_run
    ours = reference.forward(w, ids)
    assert len(ours.residuals) == len(tracr_residuals) == 2 * w.config.n_layers
    for mine, theirs in zip(ours.residuals, tracr_residuals):
        assert np.abs(mine - theirs).max() <= ATOL
    assert np.abs(ours.logits - tracr_logits).max() <= ATOL
    # Decoded predictions at every non-BOS position, all inputs.
    if spec.categorical_output:
        assert np.array_equal(np.argmax(ours.logits, -1)[:, 1:], tracr_out[:, 1:])
    else:
        assert np.abs(ours.logits[:, 1:, 0] - tracr_out[:, 1:]).max() <= ATOL
    # ... and both are the task's answers.
    targets = targets_array(spec)
    assert circuit.accuracy(w, ours.logits, targets) == 1.0
    same = circuit.predictions_equal(w, circuit.decode(w, ours.logits), circuit.decode(w, tracr_logits))
    assert same.all()


def test_reference_matches_tracr_apply_api(compiled):
    """Tracr's public ``apply`` (with its encoders) on a few raw token lists."""
    w, spec = compiled.weights, compiled.spec
    seqs = data.all_token_sequences(spec)
    for tokens in seqs[:: max(1, len(seqs) // 6)]:
        out = compiled.model.apply(["BOS", *tokens])
        ours = w.decode_outputs(reference.forward(w, w.encode(tokens)).logits[0])
        assert ours[1:] == pytest.approx(out.decoded[1:], abs=ATOL)
        assert out.decoded[1:] == pytest.approx(spec.reference(tokens), abs=ATOL)


def test_edge_forward_with_all_edges_is_the_model(compiled):
    w = compiled.weights
    ids = data.all_input_ids(compiled.spec)
    assert np.abs(circuit.edge_forward(w, ids).logits - reference.forward(w, ids).logits).max() < 1e-12


def test_ground_truth(compiled):
    """The committed circuit is re-derived, exact, and every edge is needed."""
    w, spec = compiled.weights, compiled.spec
    committed = json.loads((MODELS / f"{spec.name}_ground_truth.json").read_text())
    gt = ground_truth(spec, w)
    edges = [tuple(e) for e in committed["edges"]]
    assert gt.circuit == edges and committed["n_edges"] == len(edges)
    assert committed["n_edges_total"] == len(circuit.graph_of(w).edges)

    ids, targets = data.all_input_ids(spec), targets_array(spec)
    g = circuit.graph_of(w)
    only = circuit.circuit_mask(g, edges)
    assert circuit.accuracy(w, circuit.edge_forward(w, ids, only).logits, targets) == 1.0
    # Removing any single circuit edge (from the circuit) breaks some input.
    for _, frac_changed in circuit.ablation_effects(w, ids, edges, only):
        assert frac_changed > 0
    # Every edge outside the circuit is either structurally disconnected or
    # has no effect on predictions when removed from the full model.
    overlap = circuit.structural_overlap(w)
    outside = [e for e in g.edges if e not in set(edges)]
    structural_outside = [e for e in outside if overlap[e] > 0]
    full = {e: 1.0 for e in g.edges}
    for _, frac_changed in circuit.ablation_effects(w, ids, structural_outside, full):
        assert frac_changed == 0


def test_committed_datasets(compiled):
    spec = compiled.spec
    for split, rows in dataset_splits(spec).items():
        lines = (DATASETS / spec.name / f"{split}.jsonl").read_text().splitlines()
        assert [json.loads(x) for x in lines] == json.loads(json.dumps(rows))
        n = len(spec.vocab) ** spec.n_tokens
        assert len({tuple(r["input_ids"]) for r in rows}) == len(rows) == n
