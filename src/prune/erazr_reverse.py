"""Prune the Tracr reverse model (the original's flags: --help)."""

from edge_pruning.cli import run_cli
from edge_pruning.tracr_pruning import tracr_prune_main

if __name__ == "__main__":
    run_cli(lambda argv: tracr_prune_main("reverse", argv))
