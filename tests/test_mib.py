"""MIB's formats and evaluation: index order and names against hand-written lists,
export/import round trips, and CPR/CMD of a hand-made score set."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from edge_pruning.faithfulness import circuit_metric
from edge_pruning.mib import CURVE_FRACTIONS, MIBMap, mib_map, read_mib
from edge_pruning.mib_eval import MIBEvaluator, mib_areas
from edge_pruning.tasks import Encoded, IOITask
from modeling.modeling_fllama import FLlamaForCausalLM
from modeling.modeling_fpt2 import FPT2LMHeadModel

VOCAB = 40


def _gpt2(tmp_path, n_layer: int, seed: int = 0):
    torch.manual_seed(seed)
    path = tmp_path / f"gpt2_{n_layer}"
    GPT2LMHeadModel(GPT2Config(n_layer=n_layer, n_head=2, n_embd=16, vocab_size=VOCAB, n_positions=16, initializer_range=0.4)).save_pretrained(path)
    return FPT2LMHeadModel.from_pretrained(path, with_embedding_nodes=True).eval()


def _llama(tmp_path, ungroup_kv: bool):
    torch.manual_seed(0)
    path = tmp_path / "llama"
    if not path.exists():
        cfg = LlamaConfig(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, hidden_size=16, intermediate_size=32, vocab_size=VOCAB)
        LlamaForCausalLM(cfg).save_pretrained(path)
    return FLlamaForCausalLM.from_pretrained(path, with_embedding_nodes=True, ungroup_kv=ungroup_kv).eval()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mib")
    return {
        "gpt2": _gpt2(tmp, 2),
        "gpt2_1layer": _gpt2(tmp, 1),
        "llama_grouped": _llama(tmp, False),
        "llama_ungrouped": _llama(tmp, True),
    }


def test_index_order_and_names_of_a_two_layer_model(models, tmp_path):
    """EAP-IG's order, written out by hand: forward input, per layer heads then MLP;
    backward per layer all <q>, all <k>, all <v>, the MLP; logits last."""
    m = models["gpt2"]
    mapping = mib_map(m)
    src = ["input", "a0.h0", "a0.h1", "m0", "a1.h0", "a1.h1", "m1"]
    dst = ["a0.h0<q>", "a0.h1<q>", "a0.h0<k>", "a0.h1<k>", "a0.h0<v>", "a0.h1<v>", "m0",
           "a1.h0<q>", "a1.h1<q>", "a1.h0<k>", "a1.h1<k>", "a1.h0<v>", "a1.h1<v>", "m1", "logits"]  # fmt: skip
    assert mapping.cfg.src_nodes() == src
    assert mapping.cfg.dst_nodes() == dst
    # 32,491 for GPT-2 small is MIB's count; here: heads' readers 1*6 + 4*6, MLPs 3 + 6, logits 7.
    assert mapping.real.sum() == 6 + 24 + 3 + 6 + 7
    # One marked edge lands where EAP-IG's formulas put it: forward 1 + L(n+1) + H,
    # backward L(3n+1) + n + H for <k>.
    g = m.circuit_graph
    scores = torch.zeros(g.n_readers, g.n_writers)
    scores[g.edge_position("a0.h1", "a1.h0.k")] = 7.0
    scores[g.edge_position("tok_embeds", "resid_post")] = 3.0
    chosen = scores != 0
    graph = mapping.export(scores, chosen)
    graph.save(tmp_path / "c.pt")
    graph.save(tmp_path / "c.json")
    pt = torch.load(tmp_path / "c.pt", weights_only=True)
    assert pt["src_nodes"] == src and pt["dst_nodes"] == dst
    assert pt["edges_scores"][1 + 0 * 3 + 1, 1 * 7 + 2 + 0] == 7.0
    assert pt["edges_scores"][0, 14] == 3.0
    assert pt["edges_in_graph"].sum() == 2 and pt["edges_scores"].sum() == 10.0
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["cfg"] == {"n_layers": 2, "n_heads": 2, "parallel_attn_mlp": False, "d_model": 16}
    assert data["edges"]["a0.h1->a1.h0<k>"] == {"score": 7.0, "in_graph": True}
    assert data["edges"]["input->logits"] == {"score": 3.0, "in_graph": True}
    assert list(data["nodes"]) == [*src, "logits"]
    assert not any(n.startswith("pos") for n in data["nodes"])


def test_json_edge_names_in_eap_ig_order(models):
    """Every edge of a one-layer model, in the order EAP-IG's Graph.from_model adds them."""
    cfg = mib_map(models["gpt2_1layer"]).cfg
    assert cfg.edge_names() == [
        "input->a0.h0<q>", "input->a0.h0<k>", "input->a0.h0<v>", "input->a0.h1<q>", "input->a0.h1<k>", "input->a0.h1<v>",
        "input->m0", "a0.h0->m0", "a0.h1->m0",
        "input->logits", "a0.h0->logits", "a0.h1->logits", "m0->logits",
    ]  # fmt: skip


def test_grouped_kv_is_copied_to_every_query_head_of_its_group(models):
    m = models["llama_grouped"]
    g = m.circuit_graph
    mapping = mib_map(m)
    assert mapping.cfg.n_heads == 4 and mapping.grouped
    src, dst = mapping.cfg.src_nodes(), mapping.cfg.dst_nodes()
    scores = torch.zeros(g.n_readers, g.n_writers)
    scores[g.edge_position("a0.h2", "a1.h1.k")] = 2.5  # key/value head 1 serves query heads 2 and 3
    out = mapping.to_mib(scores)
    hits = {(src[f], dst[b]) for f, b in torch.nonzero(out).tolist()}
    assert hits == {("a0.h2", "a1.h2<k>"), ("a0.h2", "a1.h3<k>")}
    # and the ungrouped graph is MIB's one-to-one
    ungrouped = mib_map(models["llama_ungrouped"])
    assert not ungrouped.grouped and ungrouped.cfg == mapping.cfg
    assert ungrouped.real.sum() == models["llama_ungrouped"].circuit_graph.n_edges


@pytest.mark.parametrize("name", ["gpt2", "llama_grouped", "llama_ungrouped"])
@pytest.mark.parametrize("suffix", ["json", "pt"])
def test_export_import_round_trip_is_the_identity(models, name, suffix, tmp_path):
    m = models[name]
    g = m.circuit_graph
    mapping = mib_map(m)
    torch.manual_seed(1)
    scores = torch.randn(g.n_readers, g.n_writers) * g.edge_valid
    chosen = (torch.rand(g.n_readers, g.n_writers) < 0.3) & g.edge_valid
    path = tmp_path / f"c.{suffix}"
    mapping.export(scores, chosen).save(path)
    back_scores, back_chosen = mapping.import_(read_mib(path), str(path))
    mib_edges = g.edge_valid.clone()
    if "pos_embeds" in g.writer_index:  # no MIB node: imported as kept, score 0
        col = g.writer_index["pos_embeds"]
        assert back_chosen[:, col][g.edge_valid[:, col]].all() and not back_scores[:, col].any()
        mib_edges[:, col] = False
    assert torch.equal(back_scores[mib_edges], scores[mib_edges])
    assert torch.equal(back_chosen[mib_edges], chosen[mib_edges])
    assert not back_chosen[~g.edge_valid].any()


def test_import_into_the_grouped_graph_rejects_disagreeing_query_heads(models, tmp_path):
    ungrouped, grouped = mib_map(models["llama_ungrouped"]), mib_map(models["llama_grouped"])
    g = models["llama_ungrouped"].circuit_graph
    chosen = torch.zeros(g.n_readers, g.n_writers, dtype=torch.bool)
    chosen[g.edge_position("embeds", "a1.h2.k")] = True  # query head 2 only, not 3
    ungrouped.export(chosen.float(), chosen).save(tmp_path / "c.pt")
    with pytest.raises(ValueError, match=r"input->a1.h\d<k> differs .* --ungroup_kv"):
        grouped.import_(read_mib(tmp_path / "c.pt"), "c.pt")


def test_bad_files_are_clear_errors(models, tmp_path):
    mapping = mib_map(models["gpt2"])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"cfg": {"n_layers": 2, "n_heads": 2, "parallel_attn_mlp": False, "d_model": 16}, "nodes": {}, "edges": {"input->a9.h0<q>": {"score": 1, "in_graph": True}}}))
    with pytest.raises(ValueError, match=r"edge 'input->a9.h0<q>' is not an edge .*bad.json"):
        read_mib(bad)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"cfg": {"n_layers": 3, "n_heads": 2, "parallel_attn_mlp": False, "d_model": 16}, "nodes": {}, "edges": {}}))
    with pytest.raises(ValueError, match="is not this model's"):
        mapping.import_(read_mib(other), str(other))


def test_mib_areas_by_hand():
    """f = 1 everywhere: area under = 1 - 0.001, area from 1 = 0; f = k: trapezoids are
    exact for a linear f, (1 - 0.001^2) / 2; |1 - f| = 1 - k: (1 - 0.001) - that."""
    under, from_1, average = mib_areas(list(CURVE_FRACTIONS), [1.0] * 10)
    assert under == pytest.approx(0.999) and from_1 == 0.0 and average == 1.0
    under, from_1, _ = mib_areas(list(CURVE_FRACTIONS), list(CURVE_FRACTIONS))
    assert under == pytest.approx((1 - 0.001**2) / 2)
    assert from_1 == pytest.approx(0.999 - (1 - 0.001**2) / 2)


def _examples():
    g = torch.Generator().manual_seed(3)
    out = []
    for _ in range(4):
        ids = torch.randint(0, VOCAB, (6,), generator=g).tolist()
        corr = torch.randint(0, VOCAB, (6,), generator=g).tolist()
        target, wrong = torch.randint(0, VOCAB, (2,), generator=g).tolist()
        out.append(Encoded(ids, corr, [5], [target], wrong))
    return out


def test_cpr_and_cmd_of_a_hand_made_score_set(models):
    """A one-layer model has 13 MIB edges, so k = 0.1, 0.2, 0.5, 1 take 1, 2, 6, 13
    edges and smaller k none. The scores rank `input->logits` first by |score| and last
    by signed score; the circuits after MIB's pruning, worked out by hand, are below.
    Their metrics come from our masked model (pos_embeds kept, as TransformerLens keeps
    the position embedding clean); f, CPR and CMD then follow from the definitions."""
    m = models["gpt2_1layer"]
    task, examples = IOITask(), _examples()
    ev = MIBEvaluator(m, task, examples, batch_size=4, pad_id=0)
    mapping: MIBMap = ev.mapping
    named = {
        "input->logits": -5.0, "input->a0.h0<v>": 4.0, "a0.h0->logits": 3.0, "input->m0": 2.0, "m0->logits": 1.5,
        "input->a0.h0<q>": 1.0, "input->a0.h0<k>": 0.05, "input->a0.h1<q>": 0.04, "input->a0.h1<k>": 0.03,
        "input->a0.h1<v>": 0.02, "a0.h0->m0": 0.01, "a0.h1->m0": 0.005, "a0.h1->logits": 0.001,
    }  # fmt: skip
    scores = torch.zeros(mapping.cfg.n_forward, mapping.cfg.n_backward)
    for name, (f, b) in zip(mapping.cfg.edge_names(), mapping.cfg.edge_order()):
        scores[f, b] = named[name]
    six = ["input->a0.h0<v>", "a0.h0->logits", "input->m0", "m0->logits", "input->a0.h0<q>"]
    by_hand = {  # k -> the pruned circuit
        "absolute": {0.1: ["input->logits"], 0.2: ["input->logits"], 0.5: ["input->logits", *six]},
        "signed": {0.1: [], 0.2: ["input->a0.h0<v>", "a0.h0->logits"], 0.5: [*six, "input->a0.h0<k>"]},
    }
    ours = {"input": "tok_embeds", "logits": "resid_post"}

    def metric(mib_edges):
        pairs = []
        for edge in mib_edges:
            a, b = edge.split("->")
            node, _, letter = b.partition("<")
            pairs.append((ours.get(a, a), ours.get(node, node) + (f".{letter[0]}" if letter else "")))
        g = m.circuit_graph
        chosen = g.edge_matrix(pairs)
        chosen[:, g.writer_index["pos_embeds"]] = g.edge_valid[:, g.writer_index["pos_embeds"]].float()
        return circuit_metric(m, task, examples, chosen, 4, 0)[0]

    full = circuit_metric(m, task, examples, None, 4, 0)[0]
    empty = metric([])
    assert ev.full_metric == pytest.approx(full) and ev.empty_metric == pytest.approx(empty)
    result = ev.score("hand", scores)
    for ranking, circuits in by_hand.items():
        curve = result.curves[ranking]
        assert curve.n_requested == [0] * 5 + [0, 1, 2, 6, 13]
        expected_counts = [0] * 6 + [len(circuits[0.1]), len(circuits[0.2]), len(circuits[0.5]), 13]
        assert curve.weighted_edge_counts == expected_counts
        m_k = [empty] * 6 + [metric(circuits[0.1]), metric(circuits[0.2]), metric(circuits[0.5]), full]
        f = [(x - empty) / (full - empty) for x in m_k]
        assert curve.faithfulnesses == pytest.approx(f, abs=1e-5)
        k = list(CURVE_FRACTIONS)
        area = sum((k[i + 1] - k[i]) * (f[i] + f[i + 1]) / 2 for i in range(9))
        from_1 = sum((k[i + 1] - k[i]) * (abs(1 - f[i]) + abs(1 - f[i + 1])) / 2 for i in range(9))
        assert curve.area_under == pytest.approx(area, abs=1e-5)
        assert curve.area_from_1 == pytest.approx(from_1, abs=1e-5)
    assert result.cpr == result.curves["signed"].area_under
    assert result.cmd == result.curves["absolute"].area_from_1
    assert result.curves["signed"].faithfulnesses != result.curves["absolute"].faithfulnesses
