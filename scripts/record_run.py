"""Copy a finished pruning run into assets/: its results, its circuit and its masks alone.

The masks (`circuit_masks.safetensors`: the edge and node log_alphas and the λs, a few
hundred KB) stand for the whole checkpoint, whose frozen weights are the base model's:
`compare_methods.py --ep-runs` and `data.zip`'s `runs/` read them.

Usage: python scripts/record_run.py RUN_DIR ASSET_DIR
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

RESULT_FILES = ("pruning_args.json", "log.jsonl", "eval_results.json", "edges.json", "edges.pdf")


def record(run: Path, asset: Path) -> None:
    asset.mkdir(parents=True, exist_ok=True)
    for name in RESULT_FILES + tuple(p.name for p in run.glob("eval_*_*.json")):
        if (run / name).is_file():
            shutil.copy2(run / name, asset / name)
    with safe_open(str(run / "model.safetensors"), framework="pt") as f:
        masks = {k: f.get_tensor(k) for k in f.keys() if ".circuit_masks." in f".{k}"}
    if not masks:
        raise SystemExit(f"error: {run / 'model.safetensors'} holds no circuit masks")
    save_file(masks, asset / "circuit_masks.safetensors")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__.strip().splitlines()[-1])
    record(Path(sys.argv[1]), Path(sys.argv[2]))
