"""Compile the xproportion RASP program with Tracr and write its artefacts.

Writes data/tracr_models/xproportion.tracr.pkl (numpy weights, format in
tracrx.export) and data/tracr_models/xproportion_ground_truth.json (the circuit
derived by tracrx.circuit). Compiling is deterministic, so rerunning gives
identical weights. Runs from any working directory.
"""

from pathlib import Path

from tracrx.artifacts import write_model
from tracrx.programs import get_task

OUT_DIR = Path(__file__).resolve().parents[1] / "tracr_models"

if __name__ == "__main__":
    for path in write_model(get_task("xproportion"), OUT_DIR):
        print(f"wrote {path}")
