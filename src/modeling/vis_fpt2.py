"""Write a pruned GPT-2 checkpoint's circuit to edges.json:
python src/modeling/vis_fpt2.py -i CHECKPOINT [-w] [-e EDGE_SPARSITY] [-n NODE_SPARSITY] [-o OUT]."""

from edge_pruning.cli import run_cli, vis_main

if __name__ == "__main__":
    run_cli(lambda argv: vis_main(argv, arch="fpt2"))
