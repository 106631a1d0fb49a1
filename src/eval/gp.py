"""Evaluate a circuit (or a whole model) on the gp task: python src/eval/gp.py -m CHECKPOINT [-w]."""

from edge_pruning.cli import eval_main

if __name__ == "__main__":
    eval_main("gp", description=__doc__)
