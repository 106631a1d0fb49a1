import torch

# Test models are tiny: on a 2-core machine intra-op threads only add synchronisation.
torch.set_num_threads(1)
