"""Circuit probing (edge_pruning.probing): the soft nearest-neighbour loss against a
hand computation, the probe on a constructed model whose circuit is known, the causal
test against random masks, the baselines and the entry points."""

import math
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from edge_pruning.errors import UserError
from edge_pruning.probing.evaluation import (
    ablation_test,
    block_updates,
    circuit_overlap,
    nearest_neighbour_accuracy,
    random_complement_masks,
)
from edge_pruning.probing.fit import FitSettings, fit_probe
from edge_pruning.probing.loss import EPSILON, soft_nearest_neighbour_loss
from edge_pruning.probing.masks import MaskMethod, MaskUnit
from edge_pruning.probing.probe import CircuitProbe


def test_soft_nearest_neighbour_loss_by_hand():
    # v1 = v3 = (1, 0) share label 0; v2 = (0, 1) is alone in label 1.
    # Cosine distances: d12 = d23 = 1, d13 = 0.
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    y = torch.tensor([0, 1, 0])
    e = math.exp(-1.0)
    terms = [
        math.log((1.0 + EPSILON) / (e + 1.0 + EPSILON)),  # i = 1: same class j = 3 at distance 0
        math.log(EPSILON / (2 * e + EPSILON)),  # i = 2: no other member of its class
        math.log((1.0 + EPSILON) / (1.0 + e + EPSILON)),  # i = 3
    ]
    expected = -sum(terms) / 3
    assert soft_nearest_neighbour_loss(x, y).item() == pytest.approx(expected, rel=1e-6)


def test_soft_nearest_neighbour_loss_prefers_clustered_classes():
    y = torch.tensor([0, 0, 1, 1])
    clustered = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
    mixed = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.1, 1.0]])
    assert soft_nearest_neighbour_loss(clustered, y) < soft_nearest_neighbour_loss(mixed, y)


# ----------------------------------------------------------------------------- constructed model
# Inputs are one token a in 0..P-1. Attention writes nothing. The MLP has V_UNITS
# hidden units that fire for a mod 3 == j and write output dimension VAR_OUT + j, and
# P distractor units that fire for a == m and write dimension DIS_OUT + m. The LM head
# reads token j's logit from VAR_OUT + j, so the task "predict a mod 3" uses only the
# variable's units.
P, N_VALUES = 18, 3
D, INNER = 64, 32
VAR_OUT, DIS_OUT = 2 * P, 2 * P + N_VALUES


def constructed_model() -> GPT2LMHeadModel:
    cfg = GPT2Config(n_layer=1, n_head=2, n_embd=D, n_inner=INNER, n_positions=1, vocab_size=P,
                     activation_function="relu", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     tie_word_embeddings=False, bos_token_id=None, eos_token_id=None)  # fmt: skip
    model = GPT2LMHeadModel(cfg).eval()
    block = model.transformer.h[0]
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for ln in (block.ln_1, block.ln_2, model.transformer.ln_f):
            ln.weight.fill_(1.0)
        wte = model.transformer.wte.weight
        for a in range(P):  # +1 at dim a, -1 at dim P + a: mean 0, so LayerNorm only rescales
            wte[a, a], wte[a, P + a] = 1.0, -1.0
        scale = math.sqrt(2.0 / D)  # ln_2 maps the embedding's +1 to 1 / scale
        fc, proj = block.mlp.c_fc.weight, block.mlp.c_proj.weight  # (D, INNER), (INNER, D)
        for a in range(P):
            fc[a, a % N_VALUES] = scale  # variable unit j fires (value 1) when a mod 3 == j
            fc[a, N_VALUES + a] = scale  # distractor unit fires when the token is a
        for j in range(N_VALUES):
            proj[j, VAR_OUT + j] = 1.0
        for m in range(P):
            proj[N_VALUES + m, DIS_OUT + m] = 1.0
        for j in range(N_VALUES):
            model.lm_head.weight[j, VAR_OUT + j] = 10.0
    return model


def constructed_data(n: int, seed: int):
    a = torch.randint(0, P, (n,), generator=torch.Generator().manual_seed(seed))
    return a[:, None], a % N_VALUES


def known_circuit(unit: MaskUnit) -> dict[str, torch.Tensor]:
    """The masks that keep exactly the variable's path, in the probe's mask shapes."""
    if unit is MaskUnit.NEURON:  # c_fc: one mask per hidden unit; c_proj: one per output dim
        fc = torch.zeros(1, INNER)
        fc[0, :N_VALUES] = 1
        proj = torch.zeros(1, D)
        proj[0, VAR_OUT : VAR_OUT + N_VALUES] = 1
        return {"mlp_c_fc": fc, "mlp_c_proj": proj}
    fc, proj = torch.zeros(D, INNER), torch.zeros(INNER, D)
    for a in range(P):
        fc[a, a % N_VALUES] = 1
    for j in range(N_VALUES):
        proj[j, VAR_OUT + j] = 1
    return {"mlp_c_fc": fc, "mlp_c_proj": proj}


def precision_recall(found: dict, truth: dict) -> tuple[float, float]:
    tp = sum(float((found[k].bool() & truth[k].bool()).sum()) for k in truth)
    return tp / max(sum(float(found[k].sum()) for k in truth), 1.0), tp / sum(float(truth[k].sum()) for k in truth)


def test_constructed_model_computes_the_variable():
    model = constructed_model()
    x, y = constructed_data(60, 0)
    assert (model(x).logits[:, -1].argmax(-1) == y).all()


@pytest.mark.parametrize(
    "method,unit,settings",
    [
        (MaskMethod.CONTINUOUS, MaskUnit.NEURON, dict(epochs=30, batch_size=90, lr=0.05, l0_lambda=1e-4, max_temp=200)),
        (MaskMethod.CONTINUOUS, MaskUnit.WEIGHT, dict(epochs=30, batch_size=90, lr=0.05, l0_lambda=1e-4, max_temp=200)),
    ],
)
def test_probe_finds_the_known_circuit(method, unit, settings):
    torch.manual_seed(0)
    probe = CircuitProbe(constructed_model(), 0, "mlp", method, unit)
    x, y = constructed_data(360, 1)
    fit_probe(probe, x, y, 0, FitSettings(**settings))
    found = {name: m.hard_mask() for name, m in probe.layers()}
    precision, recall = precision_recall(found, known_circuit(unit))
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)
    test_x, test_y = constructed_data(200, 2)
    knn = nearest_neighbour_accuracy(block_updates(probe, x, 0), y, block_updates(probe, test_x, 0), test_y, per_class=1)
    assert knn.accuracy >= 0.95


def test_hard_concrete_probe_keeps_the_circuit_and_drops_the_rest():
    # Hard-concrete masks keep a few units too many here (Adam's step on a unit whose
    # loss gradient vanished is small): all of the circuit, almost nothing else.
    torch.manual_seed(0)
    probe = CircuitProbe(constructed_model(), 0, "mlp", MaskMethod.HARD_CONCRETE, MaskUnit.NEURON)
    x, y = constructed_data(360, 1)
    fit_probe(probe, x, y, 0, FitSettings(epochs=100, batch_size=90, lr=0.1, l0_lambda=1e-4))
    found = {name: m.hard_mask() for name, m in probe.layers()}
    truth = known_circuit(MaskUnit.NEURON)
    _, recall = precision_recall(found, truth)
    outside = sum(float((1 - truth[k]).sum()) for k in truth)
    kept_outside = sum(float((found[k].bool() & ~truth[k].bool()).sum()) for k in truth)
    assert recall == 1.0 and kept_outside / outside <= 0.1, (recall, kept_outside)
    test_x, test_y = constructed_data(200, 2)
    knn = nearest_neighbour_accuracy(block_updates(probe, x, 0), y, block_updates(probe, test_x, 0), test_y, per_class=1)
    assert knn.accuracy >= 0.95


def test_ablating_the_circuit_breaks_the_task_and_random_masks_do_not():
    probe = CircuitProbe(constructed_model(), 0, "mlp", MaskMethod.CONTINUOUS, MaskUnit.NEURON)
    with torch.no_grad():  # the known circuit, as trained masks would hold it
        for name, m in probe.layers():
            m.mask_params.copy_(known_circuit(MaskUnit.NEURON)[name] * 2 - 1)
    x, y = constructed_data(300, 3)
    res = ablation_test(probe, x, y, n_random=5, seed=0)
    assert res.vanilla == 1.0
    assert len(res.random_ablated) == 5 and min(res.random_ablated) == 1.0
    # Without the variable's units every label logit is below the others: never right.
    assert res.ablated == 0.0


def test_random_complement_masks_remove_as_many_weights_outside_the_circuit():
    circuit = {"l": torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0, 0.0]])}
    keep = random_complement_masks(circuit, torch.Generator().manual_seed(0))["l"]
    assert int((keep == 0).sum()) == 2 and keep[0, :2].tolist() == [1.0, 1.0]
    assert random_complement_masks({"l": torch.tensor([1.0, 1.0, 0.0])}, torch.Generator()) is None


def test_overlap_and_its_chance_level():
    a = {"l": torch.tensor([1, 1, 1, 0, 0, 0, 0, 0], dtype=torch.float)}
    b = {"l": torch.tensor([0, 1, 1, 1, 1, 0, 0, 0], dtype=torch.float)}
    ov = circuit_overlap(a, b)
    assert (ov.size_a, ov.size_b, ov.shared, ov.total) == (3, 4, 2, 8)
    assert ov.chance == pytest.approx(3 * 4 / 8)


def test_nearest_neighbour_accuracy_by_hand():
    train_x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    train_y = torch.tensor([0, 1])
    test_x = torch.tensor([[2.0, 0.1], [0.1, 3.0], [1.0, 0.9]])
    test_y = torch.tensor([0, 1, 1])
    res = nearest_neighbour_accuracy(train_x, train_y, test_x, test_y, per_class=None)
    assert res.accuracy == pytest.approx(2 / 3)  # the third is closer to (1, 0)


def test_masks_leave_the_bias_and_the_base_weights_alone():
    model = constructed_model()
    with torch.no_grad():
        model.transformer.h[0].mlp.c_proj.bias.fill_(0.5)
    before = model.transformer.h[0].mlp.c_proj.weight.clone()
    probe = CircuitProbe(model, 0, "mlp", MaskMethod.CONTINUOUS, MaskUnit.WEIGHT)
    x, _ = constructed_data(10, 0)
    with torch.no_grad():
        for _, m in probe.layers():
            m.mask_params.fill_(-1.0)  # every weight off: the update is the c_proj bias alone
    probe.train(False)
    u = probe.updates(x, 0)
    assert torch.allclose(u, torch.full_like(u, 0.5))
    assert torch.equal(probe.masked["mlp_c_proj"].base.weight, before)
    assert all(not p.requires_grad for p in probe.model.parameters() if p not in set(probe.mask_parameters()))


# ----------------------------------------------------------------------------- entry points


def _write(path, text):
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def tiny_arithmetic_model(tmp_path_factory):
    """A 3-step training run of a small model on the experiment-1 task (train_main)."""
    from edge_pruning.probing.train import train_main

    out = tmp_path_factory.mktemp("arith")
    cfg = _write(out / "train.yaml", f"""
dataset: disambiguation
output_dir: {out / 'model'}
model: {{n_layer: 1, n_head: 2, n_embd: 32, n_inner: 64}}
batch_size: 256
max_steps: 3
eval_every: 1
save_steps: [2]
save_dtype: float16
""")
    summary = train_main(["--config", str(cfg)])
    return out / "model", summary


def test_training_writes_checkpoints_and_an_honest_history(tiny_arithmetic_model):
    from edge_pruning.probing.data import Split, dataset_spec
    from edge_pruning.probing.train import accuracy, load_probed_model

    path, summary = tiny_arithmetic_model
    assert [row["step"] for row in summary["history"]] == [1, 2, 3]
    assert (path / "checkpoint-2" / "model.safetensors").is_file()
    model = load_probed_model(path / "final")
    assert next(model.parameters()).dtype == torch.float32
    test = Split.concat([te for _, te in dataset_spec("disambiguation").generate()])
    assert accuracy(model, test) == pytest.approx(summary["final"]["test_acc_saved"])


def test_generated_tasks_follow_their_definition():
    from edge_pruning.probing.data import dataset_spec

    (train, test), = dataset_spec("disambiguation").generate()
    a, b = train.inputs[:, 0], train.inputs[:, 1]
    assert len(train) + len(test) == 113 * 113 and len(train) == int(113 * 113 * 0.6)
    assert torch.equal(train.labels, (a * a - b * b) % 113)
    assert torch.equal(train.variables["a_minus_b"], (a - b) % 113)
    assert (train.inputs[:, 2] == 113).all()
    (t1, _), (t2, _) = dataset_spec("multitask").generate()
    assert (t1.inputs[:, 0] == 114).all() and (t2.inputs[:, 0] == 115).all()
    assert torch.equal(t1.labels, (t1.inputs[:, 1] % 29 + t1.inputs[:, 3] % 31) % 113)
    assert torch.equal(t2.labels, (t2.inputs[:, 1] % 29 + t2.inputs[:, 2] % 23) % 113)


def test_probe_main_end_to_end(tiny_arithmetic_model, tmp_path):
    import json

    from edge_pruning.probing.run import probe_main

    path, _ = tiny_arithmetic_model
    cfg = _write(tmp_path / "probe.yaml", f"""
description: tiny
dataset: disambiguation
models: {{final: {path / 'final'}}}
output_dir: {tmp_path / 'out'}
settings:
  position: 2
  train_size: 400
  random_ablations: 2
  fit: {{epochs: 2, batch_size: 200}}
probes:
  - {{variables: [a2, a_plus_b], operations: [mlp]}}
baselines: {{classifier: {{epochs: 1}}}}
overlaps: [["final:task0:a2:mlp", "final:task0:a_plus_b:mlp"]]
""")
    results = probe_main(["--config", str(cfg)])
    on_disk = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [p["id"] for p in on_disk["probes"]] == ["final:task0:a2:mlp", "final:task0:a_plus_b:mlp"]
    probe = on_disk["probes"][0]
    assert probe["maskable_weights"] == 2 * 32 * 64 and 0 <= probe["circuit_weights"] <= probe["maskable_weights"]
    assert len(probe["ablation"]["task0"]["random_ablated"]) in (0, 2)
    assert {"linear_resid_post", "mlp_attn_update", "amnesic_resid_mid"} <= set(on_disk["baselines"][0])
    assert on_disk["overlaps"][0]["total"] == probe["maskable_weights"]
    assert (tmp_path / "out" / "knn_accuracy.png").is_file() and (tmp_path / "out" / "probe.log").is_file()
    assert results["probes"] == on_disk["probes"]


def test_config_errors_name_the_key_and_the_file(tmp_path):
    from edge_pruning.probing.config import load_config
    from edge_pruning.probing.run import ProbeConfig

    base = "dataset: disambiguation\nmodels: {final: x}\noutput_dir: o\nprobes: [{variables: [a2]}]\n"
    bad = _write(tmp_path / "bad.yaml", base + "epochz: 3\n")
    with pytest.raises(UserError, match=r"unknown key 'epochz'.*bad\.yaml"):
        load_config(ProbeConfig, bad)
    bad = _write(tmp_path / "var.yaml", base.replace("[a2]", "[a3]"))
    with pytest.raises(UserError, match=r"no variable 'a3'.*var\.yaml: probes"):
        load_config(ProbeConfig, bad)
    bad = _write(tmp_path / "type.yaml", base + "settings: {fit: {epochs: many}}\n")
    with pytest.raises(UserError, match=r"expected int.*type\.yaml: settings: fit: epochs"):
        load_config(ProbeConfig, bad)
    bad = _write(tmp_path / "op.yaml", base.replace("[a2]}", "[a2], operations: [ffn]}"))
    with pytest.raises(UserError, match=r"'ffn' is not one of"):
        load_config(ProbeConfig, bad)


def test_missing_model_is_one_line_error(tmp_path, capsys):
    from edge_pruning.cli import run_cli
    from edge_pruning.probing.run import probe_main

    cfg = _write(tmp_path / "p.yaml", f"dataset: disambiguation\nmodels: {{final: {tmp_path / 'nope'}}}\n"
                 f"output_dir: {tmp_path / 'o'}\nprobes: [{{variables: [a2]}}]\n")  # fmt: skip
    with pytest.raises(SystemExit) as e:
        run_cli(probe_main, ["--config", str(cfg)])
    assert e.value.code == 2
    assert "no model here" in capsys.readouterr().err


def test_edge_probe_reads_what_the_reader_reads(tiny_arithmetic_model):
    """The circuit model's MLP-reader input (all edges on) is transformers' residual
    stream after the attention, and the final reader's is the stream after the block."""
    from edge_pruning.probing.baselines import block_vectors
    from edge_pruning.probing.data import dataset_spec
    from edge_pruning.probing.edges import EdgeProbe, EdgeReader
    from edge_pruning.probing.run import _load_circuit_model
    from edge_pruning.probing.train import load_probed_model

    path, _ = tiny_arithmetic_model
    (train, _), = dataset_spec("disambiguation").generate()
    x = train.inputs[:50]
    hf = block_vectors(load_probed_model(path / "final"), x, 0, 2)
    for reader, location in ((EdgeReader.MLP, "resid_mid"), (EdgeReader.FINAL, "resid_post")):
        circuit_model = _load_circuit_model(str(path / "final"), Path("."))
        probe = EdgeProbe(circuit_model, reader, 0)
        with circuit_model.full_model():
            got = probe.vectors(x, 2)
        assert torch.allclose(got, hf[location], atol=1e-5)
    graph = circuit_model.circuit_graph
    assert int(probe.into_reader.sum()) == graph.final_site.n_writers_before  # every writer feeds the final residual


def test_edge_probe_end_to_end(tiny_arithmetic_model, tmp_path):
    from edge_pruning.probing.run import probe_main

    path, _ = tiny_arithmetic_model
    cfg = _write(tmp_path / "edges.yaml", f"""
dataset: disambiguation
models: {{final: {path / 'final'}}}
output_dir: {tmp_path / 'out'}
settings: {{position: 2}}
probes: []
edge_probes:
  - {{variables: [a2], readers: [mlp], train_size: 300, fit: {{epochs: 1, batch_size: 150}}}}
""")
    rec = probe_main(["--config", str(cfg)])["edge_probes"][0]
    assert rec["reader"] == "mlp0" and rec["reader_edges_total"] == 2 + 2  # two embeddings, two heads
    assert set(rec["edges_into_reader"]) <= {"tok_embeds", "pos_embeds", "a0.h0", "a0.h1"}
    assert 0 <= rec["kept_upstream_edges"] <= rec["upstream_edges_total"]


def test_per_layer_ablation_removes_one_layer_of_the_circuit():
    probe = CircuitProbe(constructed_model(), 0, "mlp", MaskMethod.CONTINUOUS, MaskUnit.NEURON)
    truth = known_circuit(MaskUnit.NEURON)
    with torch.no_grad():
        for name, m in probe.layers():
            m.mask_params.copy_(truth[name] * 2 - 1)
    x, y = constructed_data(100, 4)
    res = ablation_test(probe, x, y, n_random=0)
    # Either layer's share of the circuit carries the whole variable.
    assert res.per_layer == {"mlp_c_fc": 0.0, "mlp_c_proj": 0.0}
    with torch.no_grad():  # a circuit in c_fc only: removing c_proj's (empty) part changes nothing
        probe.masked["mlp_c_proj"].mask_params.fill_(-1.0)
    assert ablation_test(probe, x, y, n_random=0).per_layer["mlp_c_proj"] == 1.0


def test_amnesic_patching_with_the_unerased_vectors_changes_nothing(tiny_arithmetic_model):
    from edge_pruning.probing.baselines import block_vectors, patched_accuracy
    from edge_pruning.probing.data import dataset_spec
    from edge_pruning.probing.train import load_probed_model

    path, _ = tiny_arithmetic_model
    model = load_probed_model(path / "final")
    (train, _), = dataset_spec("disambiguation").generate()
    x, y = train.inputs[:300], train.labels[:300]
    vanilla = float((model(x).logits[:, -1].argmax(-1) == y).double().mean())
    vectors = block_vectors(model, x, 0, 2)
    for location in ("resid_mid", "resid_post"):
        assert patched_accuracy(model, x, y, 0, 2, location, vectors[location]) == vanilla
    # resid_post at the last position is what ln_f reads (transformers' hidden_states).
    hidden = model(x, output_hidden_states=True).hidden_states[-1][:, 2]
    assert torch.allclose(model.transformer.ln_f(vectors["resid_post"]), hidden, atol=1e-5)


def test_lagrangian_target_sets_the_circuit_size():
    """With a target sparsity the λs (trained to maximise) drive the kept share to it;
    the known circuit (7% of the weights) stays inside a 50% one."""
    torch.manual_seed(0)
    probe = CircuitProbe(constructed_model(), 0, "mlp", MaskMethod.HARD_CONCRETE, MaskUnit.NEURON)
    x, y = constructed_data(360, 1)
    fit_probe(probe, x, y, 0, FitSettings(epochs=100, batch_size=90, lr=0.1, target_sparsity=0.5, reg_lr=1.0))
    kept = sum(float(c.sum()) for c in probe.circuit().values())
    assert 1 - kept / probe.n_weights() == pytest.approx(0.5, abs=0.03)
    found = {name: m.hard_mask() for name, m in probe.layers()}
    assert precision_recall(found, known_circuit(MaskUnit.NEURON))[1] == 1.0
