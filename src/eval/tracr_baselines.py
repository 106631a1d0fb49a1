"""EAP, EAP-IG and Edge Pruning against the Tracr ground-truth circuits (flags: --help)."""

from edge_pruning.cli import run_cli
from edge_pruning.tracr_baselines import tracr_baselines_main

if __name__ == "__main__":
    run_cli(tracr_baselines_main)
