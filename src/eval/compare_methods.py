"""Faithfulness curves of Edge Pruning, EAP and EAP-IG on one model and task (flags: --help)."""

from edge_pruning.cli import run_cli
from edge_pruning.compare import compare_main

if __name__ == "__main__":
    run_cli(compare_main)
