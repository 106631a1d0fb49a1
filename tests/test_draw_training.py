"""training.png: the pruning loop's closing plot of log.jsonl (KL, sparsities, λs)."""

from __future__ import annotations

import json
from types import SimpleNamespace

from edge_pruning.pruning import JsonlLogCallback
from edge_pruning.pruning.logs import plot_training


def write_log(path, n=6):
    rows = [
        {"step": 5 * i, "loss": 1.0, "kl_loss": 0.5 / i, "sampled_edge_sparsity": 0.1 * i, "expected_edge_sparsity": 0.09 * i,
         "target_edge_sparsity": min(0.1 * i, 0.5), "lambda_edges_1": -float(i), "lambda_edges_2": 0.5 * i}
        for i in range(1, n + 1)
    ]  # fmt: skip
    rows.append({"step": 5 * n, "train_loss": 0.9})  # the closing row has none of the keys
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows[:-1]


def test_plot_holds_every_logged_value(tmp_path):
    rows = write_log(tmp_path / "log.jsonl")
    fig = plot_training(tmp_path / "log.jsonl", tmp_path / "training.png")
    lines = {line.get_label(): line for ax in fig.axes for line in ax.lines}
    # node sparsities and node λs are not in this log: left out, not drawn as zeros
    assert set(lines) == {"kl_loss", "sampled_edge_sparsity", "expected_edge_sparsity", "target_edge_sparsity", "lambda_edges_1", "lambda_edges_2"}
    for key, line in lines.items():
        assert list(line.get_xdata()) == [r["step"] for r in rows]
        assert list(line.get_ydata()) == [r[key] for r in rows]
    assert fig.axes[0].get_yscale() == "log"
    assert (tmp_path / "training.png").read_bytes()[:4] == b"\x89PNG"


def test_written_at_train_end_on_rank_zero_only(tmp_path):
    write_log(tmp_path / "log.jsonl")
    callback = JsonlLogCallback(tmp_path / "log.jsonl")
    callback.on_train_end(None, SimpleNamespace(is_world_process_zero=False), None)
    assert not (tmp_path / "training.png").exists()
    callback.on_train_end(None, SimpleNamespace(is_world_process_zero=True), None)
    assert (tmp_path / "training.png").stat().st_size > 10_000


def test_a_failing_plot_only_warns(tmp_path, monkeypatch, caplog):
    """The plot is drawn before the final save: its failure must not stop the run."""
    from edge_pruning.pruning import logs

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(logs, "plot_training", broken)
    callback = logs.JsonlLogCallback(tmp_path / "log.jsonl")
    (tmp_path / "log.jsonl").write_text('{"step": 1, "loss": 1.0}\n')

    class State:
        is_world_process_zero = True

    with caplog.at_level("WARNING", logger="edge_pruning"):
        callback.on_train_end(None, State(), None)
    assert "training.png not written: disk full" in caplog.text
    assert not (tmp_path / "training.png").exists()
