"""MIB's circuit evaluation: CPR, CMD and the f_k curve of circuits on a model and an MIB task (flags: --help)."""

from edge_pruning.cli import run_cli
from edge_pruning.mib_eval import mib_eval_main

if __name__ == "__main__":
    run_cli(mib_eval_main)
