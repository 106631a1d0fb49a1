"""Evaluate a circuit (or a whole model) on the ioi task: python src/eval/ioi.py -m CHECKPOINT [-w]."""

from edge_pruning.cli import eval_main

if __name__ == "__main__":
    eval_main("ioi", description=__doc__)
