"""Draw a circuit's edges.json: python src/modeling/draw_fllama.py -i edges.json [-o out.pdf|png|svg] [-c NAME ...] [-ns] [-m auto|reader|node].

The original's drawing (one box per reader) up to 200 edges, one box per head or MLP above."""

from edge_pruning.cli import run_cli
from edge_pruning.draw import draw_main

if __name__ == "__main__":
    run_cli(draw_main)
