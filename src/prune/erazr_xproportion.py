"""Prune the Tracr xproportion model (paper hyperparameters by default; flags: --help)."""

from edge_pruning.tracr_pruning import tracr_prune_main

if __name__ == "__main__":
    tracr_prune_main("xproportion")
