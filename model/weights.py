"""Load the widely distributed `vgg_face_weights.h5` (Keras 2 `save_weights` layout).

Layout: root attribute `layer_names` (one entry per layer of the original
Sequential model, weighted or not), one group per layer with attribute
`weight_names` (e.g. ``conv2d_1/kernel:0``, ``conv2d_1/bias:0``), datasets at
``f[layer][weight_name]``: kernels (kh, kw, in, out) and biases (out,).

Matching: the file's layers *with* weights are matched to the model's VGG-Face
layers (conv1_1..conv5_3, fc6, fc7[, fc8]) by name when the file uses our names,
otherwise by order.  A model without fc8 (the age model) skips the file's last
weighted layer (fc8).  Everything is checked before any weight is assigned.
Nothing is ever downloaded.
"""
from __future__ import annotations

import os

import h5py
import numpy as np

from errors import ProjectError

from .vgg_face import WEIGHTED_LAYER_NAMES


class WeightsError(ProjectError, ValueError):
    """A weights file that cannot be loaded; the message names the file and the fix."""


_HOW = "pass the path of vgg_face_weights.h5 with --weights PATH, or train from random init with --weights none"


def _decode(values):
    return [v.decode("utf8") if isinstance(v, (bytes, np.bytes_)) else str(v) for v in np.asarray(values).ravel()]


def _read_attr(group, name):
    """Keras 2 attribute reader (also handles attributes chunked as name0, name1, ...)."""
    if name in group.attrs:
        return _decode(group.attrs[name])
    if f"{name}0" in group.attrs:
        out, i = [], 0
        while f"{name}{i}" in group.attrs:
            out.extend(_decode(group.attrs[f"{name}{i}"]))
            i += 1
        return out
    return None


def _read_file(path):
    if not os.path.exists(path):
        raise WeightsError(f"VGG-Face weights file not found: {path} ({_HOW})")
    if os.path.isdir(path) or not h5py.is_hdf5(path):
        raise WeightsError(f"{path} is not an HDF5 file (a truncated download or an HTML page?); {_HOW}")
    try:
        return _read_layers(path)
    except (OSError, KeyError, RuntimeError) as e:
        # A file cut short keeps its HDF5 signature (is_hdf5 passes) but its groups or
        # datasets point past the end: h5py fails on open or on the first read.
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise WeightsError(f"{path}: truncated or not an HDF5 file ({reason}); "
                           f"download it again, or {_HOW}") from e


def _read_layers(path):
    with h5py.File(path, "r") as f:
        root = f
        if "layer_names" not in f.attrs and "model_weights" in f:  # Keras 2 model.save()
            root = f["model_weights"]
        layer_names = _read_attr(root, "layer_names")
        if layer_names is None:
            raise WeightsError(
                f"{path} has no 'layer_names' attribute, so it is not a Keras 2 save_weights file "
                f"like vgg_face_weights.h5 (a Keras 3 .weights.h5 loads with model.load_weights); {_HOW}")
        layers = []
        for name in layer_names:
            weight_names = _read_attr(root[name], "weight_names") or []
            if weight_names:
                layers.append((name, [np.asarray(root[name][w]) for w in weight_names]))
    return layers


def load_vgg_face_weights(model, path):
    """Load VGG-Face weights from a Keras 2 h5 file into `model` (VGG-Face or age model).

    Raises WeightsError (one line naming the file and the fix) for a missing file,
    a non-HDF5 file, a wrong number of weighted layers or a shape mismatch.
    Returns the list of model layer names that were loaded.
    """
    path = os.fspath(path)
    present = {layer.name for layer in model.layers}
    targets = [model.get_layer(n) for n in WEIGHTED_LAYER_NAMES if n in present]
    missing = [n for n in WEIGHTED_LAYER_NAMES[:-1] if n not in present]
    if missing:
        raise WeightsError(f"model {model.name!r} is not a VGG-Face model (no layers {missing}); cannot load {path}")
    file_layers = _read_file(path)

    by_name = dict(file_layers)
    if all(t.name in by_name for t in targets):
        pairs = [(t, t.name, by_name[t.name]) for t in targets]
    else:
        n_file, n_model = len(file_layers), len(targets)
        if n_file == n_model:
            chosen = file_layers
        elif "fc8" not in present and n_file == n_model + 1:
            chosen = file_layers[:-1]  # the model was built without fc8: skip the file's fc8
        else:
            raise WeightsError(
                f"{path} has {n_file} layers with weights, model {model.name!r} expects {n_model}"
                f"{' (or ' + str(n_model + 1) + ' with fc8)' if 'fc8' not in present else ''} "
                f"(VGG-Face has 16: 13 convolutions, fc6, fc7, fc8); {_HOW}")
        pairs = [(t, fname, arrays) for t, (fname, arrays) in zip(targets, chosen)]

    for layer, fname, arrays in pairs:
        expected = [tuple(w.shape) for w in layer.weights]
        got = [tuple(a.shape) for a in arrays]
        if expected != got:
            raise WeightsError(
                f"{path}: shape mismatch for layer {layer.name} (file layer {fname}): file has {got}, "
                f"model expects {expected}; was the model built with another variant or input size? {_HOW}")
    for layer, _, arrays in pairs:
        layer.set_weights(arrays)
    return [layer.name for layer, _, _ in pairs]


def load_family_weights(model, path, spec) -> list[str]:
    """The VGG family's weights loader (model.family): vgg_face_weights.h5 into the age
    model (the layout follows the model, so `spec` is not needed)."""
    return load_vgg_face_weights(model, path)
