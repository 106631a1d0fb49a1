"""Prune a Llama-family model for the gt task (flags: --help)."""

from edge_pruning.pruning import prune_main

if __name__ == "__main__":
    prune_main("fllama", "gt")
