"""Start a model from another trained model's weights (`python -m trainer --init_from`).

Weights are matched by layer name and shape: every layer of `net` that holds
weights takes the source layer of the same name when all its weight shapes agree.
The head (HEAD_OUTPUT_LAYERS) is carried the same way; when its shape differs (or
the source has none) it keeps its fresh initialisation, and the note says so.
"""
from __future__ import annotations

import zipfile

import keras

from . import register_layers
from .age import HEAD_OUTPUT_LAYERS
from .weights import WeightsError


def _shapes(layer) -> list[tuple]:
    return [tuple(w.shape) for w in layer.weights]


def carry_weights(net: keras.Model, source: keras.Model, where: str) -> str:
    """Copy `source`'s weights into `net` layer by layer; returns a one-line note."""
    by_name = {layer.name: layer for layer in source.layers}
    carried, new = [], []
    for layer in net.layers:
        if not layer.weights:
            continue
        other = by_name.get(layer.name)
        if other is not None and _shapes(other) == _shapes(layer):
            layer.set_weights(other.get_weights())
            carried.append(layer.name)
        else:
            new.append(layer.name)
    if not carried:
        raise WeightsError(f"{where}: no layer matches this model by name and shape; "
                           f"--init_from needs a run of the same --variant")
    trunk_new = [name for name in new if name not in HEAD_OUTPUT_LAYERS]
    if trunk_new:
        raise WeightsError(f"{where}: layers {', '.join(trunk_new)} differ in shape or are missing; "
                           f"--init_from needs a run of the same --variant")
    head = [name for name in HEAD_OUTPUT_LAYERS if name in carried or name in new]
    head_note = "; ".join(f"head {name} " + ("carried" if name in carried else "new (its shape differs)")
                          for name in head)
    return f"init_from {where}: {len(carried)} layers carried; {head_note}"


def load_source(path: str) -> keras.Model:
    """A saved age model (best.keras), loaded with safe_mode (registered layers only)."""
    fix = "pass a run directory holding best.keras or a .keras file to --init_from"
    if not zipfile.is_zipfile(path):      # Keras would say "File not found" for a file that exists
        raise WeightsError(f"{path}: not a .keras file (a .keras file is a zip archive); {fix}")
    register_layers()
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as e:
        # TypeError: an unregistered custom layer; KeyError: a zip without config.json.
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise WeightsError(f"{path}: cannot be loaded as a Keras model ({type(e).__name__}: "
                           f"{reason}); {fix}") from None
