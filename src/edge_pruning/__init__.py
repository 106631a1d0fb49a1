"""Edge Pruning: circuits in transformers via learned hard-concrete edge masks.

`edge_pruning.from_pretrained(path)` loads any supported checkpoint as its circuit model.
"""

from .architectures import from_pretrained

__all__ = ["from_pretrained"]
