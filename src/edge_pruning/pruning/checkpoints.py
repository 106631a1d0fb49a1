"""Checkpoints a killed run can resume from: marked complete only once fully
written, and the final model saved atomically."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

COMPLETE_MARKER = "CHECKPOINT_COMPLETE"


def mark_complete(folder: Path, step: int) -> None:
    """Called once everything of checkpoint `folder` is written."""
    (folder / COMPLETE_MARKER).write_text(str(step))


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest checkpoint-N holding the completion marker."""
    path = Path(output_dir)
    if not path.is_dir():
        return None
    done = [d for d in path.glob("checkpoint-*") if (d / COMPLETE_MARKER).exists() and d.name.split("-")[-1].isdigit()]
    return str(max(done, key=lambda d: int(d.name.split("-")[-1]))) if done else None


def save_atomically(model, tokenizer, output_dir: str | os.PathLike, state_dict: dict | None = None) -> None:
    """save_pretrained (of `state_dict` if given: a gathered FSDP model) into a temporary
    folder, then move the files into place."""
    out = Path(output_dir)
    tmp = out / ".saving"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, state_dict=state_dict)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    for item in tmp.iterdir():
        os.replace(item, out / item.name)
    tmp.rmdir()
