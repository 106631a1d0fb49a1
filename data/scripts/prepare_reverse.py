"""Write the reverse datasets to data/datasets/reverse/{train,validation,test}.jsonl.

Every split is the complete input space of the task (see
tracrx.artifacts.dataset_splits for why). Runs from any working directory.
"""

from pathlib import Path

from tracrx.artifacts import write_dataset
from tracrx.programs import get_task

OUT_DIR = Path(__file__).resolve().parents[1] / "datasets" / "reverse"

if __name__ == "__main__":
    for path in write_dataset(get_task("reverse"), OUT_DIR):
        print(f"wrote {path}")
