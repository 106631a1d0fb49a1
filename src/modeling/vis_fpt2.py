"""Write a pruned GPT-2 checkpoint's circuit to edges.json: python src/modeling/vis_fpt2.py -i CHECKPOINT [-w]."""

from edge_pruning.cli import vis_main

if __name__ == "__main__":
    vis_main(arch="fpt2")
