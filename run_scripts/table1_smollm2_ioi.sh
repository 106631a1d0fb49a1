#!/usr/bin/env bash
# The paper's Table 1 on SmolLM2-135M IOI: Edge Pruning, EAP and ACDC with 200 and 400
# training examples, every circuit evaluated by the same evaluator (src/eval/ioi.py -e,
# interchange ablation, KL(full || circuit)) on 200 test prompts, at Edge Pruning's
# circuit size. Edge Pruning's runs: assets/smollm2_ioi_circuit (200, recorded) and
# run_scripts/table1_ep400.sh (400); ACDC: run_scripts/acdc_smollm2_ioi.sh.
#   bash run_scripts/table1_smollm2_ioi.sh        # EAP scoring + all evaluations + the table
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
MODEL="${MODEL:-$ROOT/data/models/smollm2-135m}"
OUT="${OUT:-$ROOT/assets/table1_smollm2_ioi}"
EP200="${EP200:-$ROOT/assets/smollm2_ioi_circuit}"
EP200_RUN="${EP200_RUN:-$ROOT/data/runs/smollm2-ioi-es0.98}"  # its prune.log has the wall time
EP400="${EP400:-$ROOT/data/runs/smollm2-ioi-es0.98-train400}"
N_EDGES="${N_EDGES:-$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['n_edges'])" "$EP200/eval_ioi_test.json")}"
mkdir -p "$OUT"
# EAP on the same training prompts as Edge Pruning: the top-N_EDGES edges by |score|.
for split in train train_400; do
  [ -f "$OUT/eap_$split/edges.json" ] || "$PY" - "$MODEL" "$split" "$N_EDGES" "$OUT/eap_$split" <<'PY'
import json, sys, time
from pathlib import Path
from edge_pruning.attribution import edge_attribution
from edge_pruning.circuit import save_edges_json
from edge_pruning.models import load_circuit_model, load_tokenizer
from edge_pruning.selection import top_n_edges
from edge_pruning.tasks import encode_split, get_task, pad_token_id
model_path, split, n_edges, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
out.mkdir(parents=True, exist_ok=True)
task, model, tok = get_task("ioi"), load_circuit_model(model_path, True), load_tokenizer(None, model_path)
model.freeze_model_weights()
examples = encode_split(task, tok, None, split, 64, None)
start = time.time()
scores = edge_attribution(model, task, examples, "eap", batch_size=8, pad_id=pad_token_id(tok)).scores
seconds = time.time() - start
graph = model.circuit_graph
save_edges_json(out / "edges.json", graph.edge_list(top_n_edges(graph, scores, n_edges)))
(out / "timing.json").write_text(json.dumps({"method": "eap", "split": split, "n_examples": len(examples), "seconds": seconds}))
PY
done
evaluate() {  # edges.json -> eval_ioi_test.json beside it
  [ -f "$(dirname "$1")/eval_ioi_test.json" ] || "$PY" "$ROOT/src/eval/ioi.py" -m "$MODEL" -w -e "$1" -s test -n 200 -b 16 -o "$(dirname "$1")/eval_ioi_test.json"
}
for d in "$OUT"/eap_train "$OUT"/eap_train_400; do evaluate "$d/edges.json"; done
for d in "$OUT"/acdc_*/tau_*; do [ -f "$d/edges.json" ] && evaluate "$d/edges.json"; done
[ -f "$EP400/eval_ioi_test.json" ] && mkdir -p "$OUT/ep_train_400" && cp "$EP400/eval_ioi_test.json" "$EP400/log.jsonl" "$OUT/ep_train_400/"
"$PY" - "$OUT" "$EP200" "$EP200_RUN" "$EP400" <<'PY'
import json, sys
from pathlib import Path
out, ep200 = Path(sys.argv[1]), Path(sys.argv[2])
rows = []
def add(method, n, folder, seconds, note=""):
    e = json.loads((folder / "eval_ioi_test.json").read_text())
    rows.append({"method": method, "train_examples": n, "n_edges": e["n_edges"], "edge_sparsity": 1 - e["n_edges"] / e["n_edges_total"],
                 "kl": e["circuit"]["kl"], "logit_difference": e["circuit"]["logit_difference"], "exact_match": e["circuit"]["exact_match"],
                 "seconds": seconds, "note": note})
def prune_seconds(log):
    """From the first line of prune.log to the last checkpoint saved (the training)."""
    if not log.exists():
        return None
    from datetime import datetime
    lines = [l for l in log.read_text().splitlines() if l[:4].isdigit()]
    stamp = lambda l: datetime.strptime(l[:23], "%Y-%m-%d %H:%M:%S,%f")
    saves = [l for l in lines if "Saving model checkpoint" in l]
    return (stamp(saves[-1]) - stamp(lines[0])).total_seconds() if saves else None
add("edge-pruning", 200, ep200, prune_seconds(Path(sys.argv[3]) / "prune.log"))
if (out / "ep_train_400").exists():
    add("edge-pruning", 400, out / "ep_train_400", prune_seconds(Path(sys.argv[4]) / "prune.log"))
for split, n in (("train", 200), ("train_400", 400)):
    t = json.loads((out / f"eap_{split}" / "timing.json").read_text())
    add("eap", n, out / f"eap_{split}", t["seconds"])
for d in sorted(out.glob("acdc_*/tau_*")):
    r = json.loads((d / "result.json").read_text())
    if (d / "eval_ioi_test.json").exists():
        add("acdc", r["n_examples"], d, r["seconds"], f"tau {r['tau']}")
(out / "table1.json").write_text(json.dumps(rows, indent=2))
print(f"{'method':<14}{'train':>6}{'edges':>8}{'sparsity':>10}{'KL':>8}{'logit diff':>11}{'seconds':>9}")
for r in rows:
    s = "" if r["seconds"] is None else f"{r['seconds']:.0f}"
    print(f"{r['method']:<14}{r['train_examples']:>6}{r['n_edges']:>8}{r['edge_sparsity']:>10.4f}{r['kl']:>8.3f}{r['logit_difference']:>11.2f}{s:>9} {r['note']}")
PY
