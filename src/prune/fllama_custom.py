"""Prune a Llama-family model on a custom JSONL dataset (flags: --help)."""

from edge_pruning.pruning import prune_main

if __name__ == "__main__":
    prune_main("fllama", "custom")
