"""Evaluate a circuit (or a whole model) on the gp task:
python src/eval/gp.py -m CHECKPOINT [-w] [-d DATA] [-s SPLIT] [-n N] [-se S] [-o OUT] (the original's flags)."""

from edge_pruning.cli import eval_main, run_cli

if __name__ == "__main__":
    run_cli(lambda argv: eval_main("gp", argv, description=__doc__))
