"""Evaluate a circuit on Boolean expressions (the original's flags):
python src/eval/boolean_expressions.py -m CHECKPOINT -M instruction|fewshot [-e edges.json] [-r REFERENCE] [-bf16]."""

from edge_pruning.cli import eval_main, run_cli

if __name__ == "__main__":
    run_cli(lambda argv: eval_main(None, argv, description=__doc__))
