"""ACDC on the circuit graph, a τ sweep, resumable (flags: --help):
python src/eval/acdc.py -m data/models/smollm2-135m -t ioi -w --tau 0.01 0.03 -o OUT."""

from edge_pruning.acdc import acdc_main
from edge_pruning.cli import run_cli

if __name__ == "__main__":
    run_cli(acdc_main)
