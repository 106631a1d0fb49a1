"""Circuit probing (Lepori, Serre & Pavlick): inside one block of a GPT-2 model, find
the weights whose output encodes a hypothesised intermediate variable, then ablate
them to test whether the model uses it. Masks are hard concrete (`edge_pruning.l0`)
or continuous sparsification; the objective is the soft nearest-neighbour loss on the
block's residual update plus an L0 penalty.

`run.probe_main` runs one experiment from its YAML config; `train.train_main` trains
the small arithmetic models the experiments probe.
"""
