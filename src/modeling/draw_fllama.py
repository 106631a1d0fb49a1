"""Draw a circuit's edges.json as a PDF: python src/modeling/draw_fllama.py -i edges.json [-o out.pdf]."""

from edge_pruning.cli import run_cli
from edge_pruning.draw import draw_main

if __name__ == "__main__":
    run_cli(draw_main)
