"""Prune a Llama-family model for the gp task (the original's flags: --help)."""

from edge_pruning.cli import run_cli
from edge_pruning.pruning import prune_main

if __name__ == "__main__":
    run_cli(lambda argv: prune_main("fllama", "gp", argv))
