"""One entry point for every architecture and task (also the `edge-pruning` command):

  python -m edge_pruning prune --task TASK --initialize_from CHECKPOINT [flags]
  python -m edge_pruning eval --task TASK -m CHECKPOINT [flags]
  python -m edge_pruning vis -i CHECKPOINT [flags]
  python -m edge_pruning draw -i EDGES_JSON [flags]
  python -m edge_pruning view CIRCUIT [CIRCUIT_B] -o circuit.html
  python -m edge_pruning export-mib CIRCUIT --model PATH -o OUT.json|OUT.pt
  python -m edge_pruning import-mib FILE --model PATH -o edges.json
  python -m edge_pruning acdc --task TASK -m CHECKPOINT [flags]
  python -m edge_pruning probe --config CONFIG.yaml

The architecture is read off the checkpoint's config (`prune --arch` checks it
instead). `--help` after a subcommand (and, for prune and eval, its task) lists its
flags: those of `src/prune/*.py`, `src/eval/*.py`, `src/modeling/vis_*.py` and
`draw_*.py`, which stay as aliases.
"""

from __future__ import annotations

import argparse
import importlib

from .architectures import ARCHITECTURES
from .cli import eval_main, run_cli
from .pruning import prune_main
from .tasks import TASKS, TRACR_TASKS
from .tracr_pruning import tracr_prune_main

# The Boolean-expressions evaluation picks its prompt format with -M instruction|fewshot.
BOOLEAN_EVAL = "boolean_expressions"
EVAL_TASKS = sorted({t for t in TASKS if t not in TRACR_TASKS and not t.startswith(BOOLEAN_EVAL)} | {BOOLEAN_EVAL})
# Subcommands that take their own argv: "module:function" under edge_pruning, imported
# only when run (so one command's optional dependencies do not load for another).
STANDALONE_COMMANDS = {
    "vis": "cli:vis_main",
    "draw": "draw:draw_main",
    "view": "viewer:view_main",
    "export-mib": "mib:export_main",
    "import-mib": "mib:import_main",
    "acdc": "acdc:acdc_main",
    "probe": "probing.run:probe_main",
}
COMMANDS = ("prune", "eval", *STANDALONE_COMMANDS)
HELP_FLAGS = ("-h", "--help")


def main(argv: list[str] | None = None) -> None:
    """The console script: every subcommand under `run_cli` (one-line user errors)."""
    run_cli(dispatch, argv)


def dispatch(argv: list[str]) -> object:
    if not argv or argv[0] in HELP_FLAGS:
        print(__doc__)
        return None
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        argparse.ArgumentParser(prog="edge-pruning").error(
            f"unknown command {command!r} (choose from {', '.join(COMMANDS)})"
        )
    if command in STANDALONE_COMMANDS:
        module, function = STANDALONE_COMMANDS[command].split(":")
        return getattr(importlib.import_module(f".{module}", __package__), function)(rest)
    options, rest = _task_options(command, rest)
    if options is None:
        return None
    if command == "eval":
        return eval_main(None if options.task == BOOLEAN_EVAL else options.task, rest)
    if options.task in TRACR_TASKS:
        if options.arch not in (None, "erazr"):
            raise ValueError(f"--task {options.task} prunes a Tracr model (--arch erazr), not {options.arch}")
        return tracr_prune_main(options.task, rest)
    return prune_main(options.arch, options.task, rest)


def _task_options(command: str, argv: list[str]) -> tuple[argparse.Namespace | None, list[str]]:
    """`--task` (and for prune `--arch`), taken off the command line; the rest is the
    entry point's. None, after printing help, for `--help` without a task."""
    p = argparse.ArgumentParser(prog=f"edge-pruning {command}", add_help=False, allow_abbrev=False)
    p.add_argument("--task", choices=sorted(TASKS) if command == "prune" else EVAL_TASKS)
    if command == "prune":
        p.add_argument("--arch", choices=list(ARCHITECTURES), help="default: the checkpoint's")
    options, rest = p.parse_known_args(argv)
    if options.task is None:
        if any(flag in rest for flag in HELP_FLAGS):
            p.print_help()
            print(f"\n`edge-pruning {command} --task TASK --help` lists the task's flags.")
            return None, rest
        p.error("the following arguments are required: --task")
    return options, rest


if __name__ == "__main__":
    main()
