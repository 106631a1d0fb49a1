"""Write a pruned Llama checkpoint's circuit to edges.json (-i CHECKPOINT), or the
edges two circuits share (-m1 A -m2 B -o out.json)."""

from edge_pruning.cli import vis_main

if __name__ == "__main__":
    vis_main(arch="fllama")
