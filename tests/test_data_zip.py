"""`data.zip` is exactly what `data/` and the recorded circuits build, and unzipping it
over `data/` as the original's README says changes no file there."""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("build_data_zip", ROOT / "scripts" / "build_data_zip.py")
build_data_zip = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_data_zip)


def test_data_zip_is_built_from_data():
    committed = (ROOT / "data.zip").read_bytes()
    assert committed == build_data_zip.build(), "rebuild with python scripts/build_data_zip.py"


def test_unzipping_over_data_changes_nothing(tmp_path):
    with zipfile.ZipFile(ROOT / "data.zip") as archive:
        names = archive.namelist()
        archive.extractall(tmp_path)
    assert {n.split("/")[0] for n in names} == {"datasets", "helper_files", "tracr_models", "runs"}
    for name in names:
        unpacked = (tmp_path / name).read_bytes()
        if name.startswith("runs/"):
            continue  # data/runs/ holds a user's own runs; the recorded ones come from assets/
        assert unpacked == (ROOT / "data" / name).read_bytes(), name
    # every shipped file of those folders is in the zip
    for folder in build_data_zip.PACKED_DIRS:
        for path in build_data_zip.shipped_files(ROOT, folder):
            assert path.relative_to(ROOT / "data").as_posix() in names


def test_recorded_runs_are_mask_only_checkpoints(tmp_path):
    from safetensors import safe_open

    with zipfile.ZipFile(ROOT / "data.zip") as archive:
        masks = [n for n in archive.namelist() if n.startswith("runs/") and n.endswith(".safetensors")]
        assert masks
        archive.extractall(tmp_path, members=masks)
    for name in masks:
        with safe_open(str(tmp_path / name), framework="pt") as f:
            keys = list(f.keys())
        assert keys and all("circuit_masks" in k or "log_alpha" in k or "lambda" in k for k in keys), keys
