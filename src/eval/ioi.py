"""Evaluate a circuit (or a whole model) on the ioi task:
python src/eval/ioi.py -m CHECKPOINT [-w] [-d DATA] [-s SPLIT] [-n N] [-se S] [-o OUT] (the original's flags)."""

from edge_pruning.cli import eval_main, run_cli

if __name__ == "__main__":
    run_cli(lambda argv: eval_main("ioi", argv, description=__doc__))
