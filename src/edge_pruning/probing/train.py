"""Training the small arithmetic GPT-2 models the experiments probe, with the HF
Trainer: cross-entropy at the last position (in float64, as the original), AdamW
with weight decay, a 10-step warm-up and a constant rate. Checkpoints at chosen steps
are saved as safetensors (float16 when `save_dtype` says so, to keep data/ small),
with the train/test accuracy curve in `history.json`.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..errors import UserError
from .config import load_config
from .data import DatasetSpec, Split, dataset_spec

logger = logging.getLogger(__name__)


@dataclass
class ModelShape:
    """The original's 1-layer model: 4 heads, d = 128, MLP 512, ReLU, no dropout."""

    n_layer: int = 1
    n_head: int = 4
    n_embd: int = 128
    n_inner: int = 512


@dataclass
class TrainConfig:
    dataset: str
    output_dir: str
    model: ModelShape = field(default_factory=ModelShape)
    lr: float = 1e-3
    weight_decay: float = 1.0
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 10
    batch_size: int | None = None  # None: full batch, as the original
    max_steps: int = 10000
    eval_every: int = 100
    save_steps: list[int] = field(default_factory=list)  # besides the final step
    stop_at_test_acc: float | None = None  # stop early once test accuracy reaches this
    model_seed: int = 0
    save_dtype: str = "float32"

    def check(self, where: str) -> None:
        if self.max_steps < 1 or self.eval_every < 1:
            raise UserError("max_steps and eval_every must be >= 1", where)
        if self.batch_size is not None and self.batch_size < 1:
            raise UserError("batch_size must be >= 1 (or null for full batch)", where)
        if self.save_dtype not in ("float32", "float16"):
            raise UserError(f"save_dtype must be float32 or float16, got {self.save_dtype!r}", where)
        dataset_spec(self.dataset, f"{where}: dataset")


class TokenDataset(Dataset):
    def __init__(self, split: Split) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.split.inputs[i], "labels": self.split.labels[i]}


def last_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the label at the last position, in float64."""
    return torch.nn.functional.cross_entropy(logits[:, -1].double(), labels)


@torch.no_grad()
def accuracy(model, split: Split, batch_size: int = 4096) -> float:
    """Share of examples whose last-position argmax is the label."""
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(split), batch_size):
        logits = model(split.inputs[i : i + batch_size]).logits[:, -1]
        correct += int((logits.argmax(-1) == split.labels[i : i + batch_size]).sum())
    model.train(was_training)
    return correct / max(len(split), 1)


def build_model(spec: DatasetSpec, shape: ModelShape, seed: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(
        n_layer=shape.n_layer, n_head=shape.n_head, n_embd=shape.n_embd, n_inner=shape.n_inner,
        n_positions=spec.seq_len, vocab_size=spec.vocab_size, activation_function="relu",
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None, eos_token_id=None,
    )  # fmt: skip
    return GPT2LMHeadModel(cfg)


def save_checkpoint(model, path: Path, dtype: str) -> None:
    import copy

    out = copy.deepcopy(model)
    if dtype == "float16":
        out = out.half()
    out.save_pretrained(path)


def load_probed_model(path: str | Path):
    """A saved arithmetic model, in float32 whatever dtype it was stored in."""
    from transformers import GPT2LMHeadModel

    path = Path(path)
    if not (path / "config.json").is_file():
        raise UserError("no model here (config.json missing); train it with `python src/probe/train_algorithmic_models.py`", path)
    return GPT2LMHeadModel.from_pretrained(path, dtype=torch.float32).eval()


def train(cfg: TrainConfig) -> dict:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    spec = dataset_spec(cfg.dataset)
    splits = spec.generate()
    train_split = Split.concat([tr for tr, _ in splits])
    test_split = Split.concat([te for _, te in splits])
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "train.log", mode="w")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    model = build_model(spec, cfg.model, cfg.model_seed)
    history: list[dict] = []
    save_at = set(cfg.save_steps)

    class Progress(TrainerCallback):
        """Accuracies every `eval_every` steps, checkpoints at `save_steps`, early stop."""

        def on_step_end(self, args, state, control, model=None, **kwargs):
            step = state.global_step
            if step % cfg.eval_every == 0 or step in save_at:
                row = {"step": step, "train_acc": accuracy(model, train_split), "test_acc": accuracy(model, test_split)}
                history.append(row)
                logger.info(json.dumps(row))
                if cfg.stop_at_test_acc is not None and row["test_acc"] >= cfg.stop_at_test_acc:
                    control.should_training_stop = True
            if step in save_at:
                save_checkpoint(model, out / f"checkpoint-{step}", cfg.save_dtype)
            return control

    batch = cfg.batch_size or len(train_split)
    scratch = tempfile.TemporaryDirectory()  # the Trainer's own output (it saves nothing here)
    args = TrainingArguments(
        output_dir=scratch.name, per_device_train_batch_size=batch, max_steps=cfg.max_steps,
        learning_rate=cfg.lr, weight_decay=cfg.weight_decay, adam_beta1=cfg.betas[0], adam_beta2=cfg.betas[1],
        lr_scheduler_type="constant_with_warmup", warmup_steps=cfg.warmup_steps, logging_steps=cfg.eval_every,
        save_strategy="no", report_to=[], use_cpu=not torch.cuda.is_available(), seed=cfg.model_seed,
        dataloader_drop_last=False, remove_unused_columns=False, disable_tqdm=False,
    )  # fmt: skip
    trainer = Trainer(
        model=model, args=args, train_dataset=TokenDataset(train_split),
        compute_loss_func=lambda outputs, labels, num_items_in_batch=None: last_token_loss(outputs.logits, labels),
        callbacks=[Progress()],
    )  # fmt: skip
    trainer.train()
    scratch.cleanup()
    step = trainer.state.global_step
    final = {"step": step, "train_acc": accuracy(model, train_split), "test_acc": accuracy(model, test_split)}
    if not history or history[-1]["step"] != step:
        history.append(final)
    save_checkpoint(model, out / "final", cfg.save_dtype)
    reloaded = load_probed_model(out / "final")
    final["test_acc_saved"] = accuracy(reloaded, test_split)  # after the float16 round trip
    summary = {"config": asdict(cfg), "final": final, "history": history}
    (out / "history.json").write_text(json.dumps(summary, indent=1))
    logger.info("final %s", json.dumps(final))
    logger.removeHandler(handler)
    return summary


def train_main(argv: list[str]) -> dict:
    """`train_algorithmic_models.py --config configs/train/NAME.yaml`."""
    p = argparse.ArgumentParser(description="Train an arithmetic GPT-2 model for circuit probing")
    p.add_argument("--config", required=True, help="a training config (configs/train/*.yaml)")
    p.add_argument("--max-steps", dest="max_steps", type=int, default=None, help="override the config's max_steps")
    p.add_argument("--output-dir", dest="output_dir", default=None, help="override the config's output_dir")
    args = p.parse_args(argv)
    overrides = {k: v for k, v in {"max_steps": args.max_steps, "output_dir": args.output_dir}.items() if v is not None}
    cfg = load_config(TrainConfig, args.config, overrides)
    summary = train(cfg)
    tqdm.write(f"final: {summary['final']}; written to {cfg.output_dir}")
    return summary
