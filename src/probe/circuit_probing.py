"""Circuit probing, one experiment from its config (the seed's interface):
python src/probe/circuit_probing.py --config configs/circuit_probing/disambiguation.yaml"""

from edge_pruning.cli import run_cli
from edge_pruning.probing.run import probe_main

if __name__ == "__main__":
    run_cli(probe_main)
