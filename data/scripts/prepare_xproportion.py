"""Write the xproportion datasets to data/datasets/xproportion/{train,validation,test}.jsonl.

Every split is the complete input space of the task (see
tracrx.artifacts.dataset_splits for why). Runs from any working directory.
"""

from pathlib import Path

from tracrx.artifacts import write_dataset
from tracrx.programs import get_task

OUT_DIR = Path(__file__).resolve().parents[1] / "datasets" / "xproportion"

if __name__ == "__main__":
    for path in write_dataset(get_task("xproportion"), OUT_DIR):
        print(f"wrote {path}")
