"""Evaluate a circuit (or a whole model) on the gt task: python src/eval/gt.py -m CHECKPOINT [-w]."""

from edge_pruning.cli import eval_main

if __name__ == "__main__":
    eval_main("gt", description=__doc__)
