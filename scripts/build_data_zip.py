"""Build the top-level `data.zip` from `data/` and the recorded circuits in `assets/`.

The original ships its data as `data.zip` ("unzip it to data/ before running the
code"). Here `data/` is the source of truth and this script packs it, byte-for-byte
reproducibly (sorted members, fixed timestamps), so `tests/test_data_zip.py` can check
that the committed zip is exactly what `data/` holds. Layout, as the original's:

    datasets/      the task datasets (the 100k-example splits are generated on demand)
    helper_files/  the seed lists and templates the generators read
    tracr_models/  the compiled Tracr models and their ground-truth circuits
    runs/          the recorded circuits as mask-only checkpoints (from assets/)

Usage: python scripts/build_data_zip.py [--check]
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKED_DIRS = ("datasets", "helper_files", "tracr_models")
# Recorded circuits: assets folder -> run name under runs/.
RECORDED_RUNS = {"smollm2_ioi_circuit": "smollm2-ioi-es0.98", "smollm2_ioi_circuit_es0.99": "smollm2-ioi-es0.99"}
RUN_FILES = ("circuit_masks.safetensors", "pruning_args.json", "edges.json")
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def shipped_files(root: Path, folder: str) -> list[Path]:
    """The files of data/<folder> the repository ships (git-tracked), not the splits a
    user generated locally; every file where there is no git checkout."""
    base = root / "data" / folder
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--", str(base)], cwd=root, capture_output=True, check=True).stdout
        return sorted(root / name for name in listed.decode().split("\0") if name)
    except (OSError, subprocess.CalledProcessError):
        return sorted(p for p in base.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def members(root: Path = ROOT) -> dict[str, Path]:
    """Archive name -> source file, in archive order."""
    out: dict[str, Path] = {}
    for folder in PACKED_DIRS:
        for path in shipped_files(root, folder):
            out[path.relative_to(root / "data").as_posix()] = path
    for asset, run in RECORDED_RUNS.items():
        for name in RUN_FILES:
            path = root / "assets" / asset / name
            if path.is_file():
                out[f"runs/{run}/{name}"] = path
    return out


def build(root: Path = ROOT) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, path in members(root).items():
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes(), compresslevel=9)
    return buffer.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if data.zip is not what data/ builds")
    args = parser.parse_args()
    data = build()
    target = ROOT / "data.zip"
    if args.check:
        if not target.is_file() or target.read_bytes() != data:
            print("error: data.zip differs from data/; rebuild it with python scripts/build_data_zip.py", file=sys.stderr)
            return 1
        print(f"data.zip is up to date ({len(data) / 2**20:.1f} MiB)")
        return 0
    tmp = target.with_suffix(".zip.tmp")
    tmp.write_bytes(data)
    tmp.replace(target)
    print(f"wrote {target} ({len(data) / 2**20:.1f} MiB, {len(members())} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
