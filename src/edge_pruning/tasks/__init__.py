"""The tasks: how each task's data becomes model inputs, its loss and metrics.

One module per job: `base` (the `Task` interface), `batch` (`Encoded`, `Batch`,
`collate`), `tokens`, one module per task (`ioi`, `gp`, `boolean`, `gt`, `custom`,
`tracr`), `registry` (`get_task`) and `loading` (splits from disk, encoded).

Every task turns its examples into `Encoded` records: clean and corrupted token ids
of equal length, the positions whose next-token distribution is scored, the right
token at each, and (for two-way choices) the wrong one. The pruning loop and the
evaluation loop are the same for every task; only `loss` and `metrics` differ.

Data layouts. A task reads its rows in the original Edge Pruning column layout
(``ioi_sentences``/``corr_ioi_sentences``; ``prefix``/``corr_prefix``/``digits``;
``prefix``/``corr_prefix``/``pronoun``; ``input``/``corr_input``) as well as in
this project's own (``clean``/``corrupted``/``target``/``distractor``, ...). The
layout is detected from the columns; `Task.layouts` lists them in order of
preference.

Metrics. The defaults are the original's definitions (its ``src/eval/*.py``):

* ``accuracy``: the circuit's argmax over the full vocabulary at the scored position
  is the target token (Boolean expressions: the argmax token, decoded and stripped,
  equals the answer string); ``exact_match``: the circuit's argmax is the full
  model's (Boolean: as decoded strings). ``binary_accuracy`` is ours: the right
  answer's logit beats the wrong one's.
* greater-than: ``prob_difference`` P(YY > d) - P(YY < d) and ``prob_difference_10``
  (the same within ten years of d), over the 100 two-digit year tokens,
  renormalised, with d the start year's two digits (the dataset's ``digits``);
  Kendall tau between the circuit's and the full model's year distributions; KL over
  the renormalised year distribution. ``prob_difference_leq`` (P(YY > d) -
  P(YY <= d)) is ours. Tokenizers that split digits use the digit chain rule instead
  (see `GreaterThanTask`); the metrics say which definition they used.
* KL is the per-example mean everywhere.
"""

from ..errors import TaskDataError
from ..paths import DATASETS_DIR, HELPERS_DIR, REPO_ROOT
from .base import Task, kl_divergence
from .batch import Batch, Encoded, collate
from .boolean import BooleanExpressionsTask, stripped_token_classes
from .choice import ChoiceTask
from .custom import CustomTask
from .gp import GenderedPronounTask
from .gt import GreaterThanTask, start_yy
from .ioi import IOI_SLOTS, IOITask, find_ioi_template, fit_ioi_template, ioi_templates
from .loading import SPLIT_ALIASES, check_seq_length, encode_split, encode_tracr_split, load_rows
from .registry import TASKS, get_task
from .tokens import pad_token_id
from .tracr import FRACTION_ATOL, TRACR_TASKS, ReverseTask, TracrTask, XProportionTask, get_tracr_task

__all__ = [
    "DATASETS_DIR", "FRACTION_ATOL", "HELPERS_DIR", "IOI_SLOTS", "REPO_ROOT", "SPLIT_ALIASES", "TASKS", "TRACR_TASKS",
    "Batch", "BooleanExpressionsTask", "ChoiceTask", "CustomTask", "Encoded", "GenderedPronounTask", "GreaterThanTask",
    "IOITask", "ReverseTask", "Task", "TaskDataError", "TracrTask", "XProportionTask",
    "check_seq_length", "collate", "encode_split", "encode_tracr_split", "find_ioi_template", "fit_ioi_template",
    "get_task", "get_tracr_task", "ioi_templates", "kl_divergence", "load_rows", "pad_token_id", "start_yy",
    "stripped_token_classes",
]  # fmt: skip
