"""Evaluate a circuit on Boolean expressions:
python src/eval/boolean_expressions.py -p CHECKPOINT -m fewshot|instruction [-e edges.json]."""

from edge_pruning.cli import eval_main

if __name__ == "__main__":
    eval_main(None, description=__doc__)
