"""Train an arithmetic GPT-2 model for circuit probing (the seed's script):
python src/probe/train_algorithmic_models.py --config configs/train/disambiguation.yaml"""

from edge_pruning.cli import run_cli
from edge_pruning.probing.train import train_main

if __name__ == "__main__":
    run_cli(train_main)
