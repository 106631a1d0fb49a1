"""Tracr models for the Edge Pruning reproduction.

Compiles RASP programs with the PyPI ``tracr`` package (tracr-pypi), exports
their weights to plain numpy, runs them with a numpy reference forward, and
derives their ground-truth circuits. Loading an export needs numpy only:

    from tracrx import load_weights, forward
    w = load_weights("data/tracr_models/reverse.tracr.pkl")
    out = forward(w, [w.encode([1, 2, 3])])

Modules: ``programs`` (tasks and RASP programs), ``export`` (compile and
pickle format), ``reference`` (numpy forward: the spec for the PyTorch
model), ``circuit`` (edge graph, edge-level forward, ground truth), ``data``
(all inputs of a task), ``artifacts`` (what the data scripts write).
"""

from tracrx.export import TracrConfig, TracrWeights, load_weights, save_weights
from tracrx.reference import forward

__all__ = ["TracrConfig", "TracrWeights", "forward", "load_weights", "save_weights"]
