import sys
from pathlib import Path

import torch

# Test models are tiny: on a 2-core machine intra-op threads only add synchronisation.
torch.set_num_threads(1)

# tests/reference.py holds the literal reference implementations the tests compare with.
sys.path.insert(0, str(Path(__file__).parent))
