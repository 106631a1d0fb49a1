"""Prune a Llama-family model once and write MIB's nine circuits on the way: the flags of
`fllama_<task>.py`, plus --task (default ioi) and --mib_folder ({task}_{model})."""

from edge_pruning.cli import run_cli
from edge_pruning.pruning.snapshots import snapshot_main

if __name__ == "__main__":
    run_cli(lambda argv: snapshot_main("fllama", argv))
