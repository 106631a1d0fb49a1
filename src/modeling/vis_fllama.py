"""Write a pruned Llama checkpoint's circuit to edges.json (-i CHECKPOINT, or -m1 CHECKPOINT),
or the edges two circuits share (-m1 A -m2 B -o out.json)."""

from edge_pruning.cli import run_cli, vis_main

if __name__ == "__main__":
    run_cli(lambda argv: vis_main(argv, arch="fllama"))
