"""Prune a Llama-family model for Boolean expressions, few-shot format (flags: --help)."""

from edge_pruning.pruning import prune_main

if __name__ == "__main__":
    prune_main("fllama", "boolean_expressions_fs")
