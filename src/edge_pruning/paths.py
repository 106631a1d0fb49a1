"""Where the shipped data lives: the repository's data/ folder (the package installs
editable, so this is the checkout's)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = REPO_ROOT / "data"
DATASETS_DIR = DATA_DIR / "datasets"  # where the generators write and the tasks load from
HELPERS_DIR = DATA_DIR / "helper_files"  # seed files (names, places, templates) of the generators
TRACR_MODELS_DIR = DATA_DIR / "tracr_models"
RUNS_DIR = DATA_DIR / "runs"
