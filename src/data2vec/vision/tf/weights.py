"""The one place where Keras variables meet the PyTorch classes' parameter names.

Every layer of the Keras models is named after the PyTorch module it mirrors, so a variable's
PyTorch name is the path of layer names down to it plus the variable's own name, e.g.
``backbone`` / ``encoder`` / ``layers.3`` / ``attention`` / ``qkv`` / ``kernel`` ->
``backbone.encoder.layers.3.attention.qkv.weight``. Keras' own layers name their variables
differently and store kernels in another layout; ``BUILTIN_VARIABLES`` says how. (Keras'
own ``variable.path`` is not used: it does not nest the names of layers built in ``__init__``.)

Checkpoint files go through the PyTorch classes (``model.py``), so the reference's names
and the key-mapping tables of ``vision/checkpoint_keys.py`` are used unchanged.
"""

from __future__ import annotations

from typing import Mapping

import keras
import numpy as np
import torch

# (Keras variable name -> (PyTorch parameter name, layout)) per Keras layer type.
#   "linear": PyTorch (out, in)                 <-> Keras (in, out)
#   "conv":   PyTorch (out, in, kh, kw) or, for transposed convolutions, (in, out, kh, kw)
#             <-> Keras (kh, kw, in, out) or (kh, kw, out, in): the same axis permutation
_LINEAR = {"kernel": ("weight", "linear"), "bias": ("bias", None)}
_CONV = {"kernel": ("weight", "conv"), "bias": ("bias", None)}
_NORM = {"gamma": ("weight", None), "beta": ("bias", None)}
BUILTIN_VARIABLES: dict[type, dict[str, tuple[str, str | None]]] = {
    keras.layers.Dense: _LINEAR,
    keras.layers.Conv2D: _CONV,
    keras.layers.Conv2DTranspose: _CONV,
    keras.layers.LayerNormalization: _NORM,
    keras.layers.BatchNormalization: {
        **_NORM, "moving_mean": ("running_mean", None), "moving_variance": ("running_var", None)
    },
}
# PyTorch state that has no Keras variable: BatchNorm's step counter (it only matters for momentum=None;
# save_pretrained writes the PyTorch class's fresh 0)
TORCH_ONLY_SUFFIXES = (".num_batches_tracked",)


# the axis permutation from the PyTorch to the Keras layout; the way back is its inverse
_KERAS_AXES = {"linear": (1, 0), "conv": (2, 3, 1, 0)}


def to_keras_layout(array: np.ndarray, layout: str | None) -> np.ndarray:
    return array if layout is None else array.transpose(_KERAS_AXES[layout])


def to_torch_layout(array: np.ndarray, layout: str | None) -> np.ndarray:
    return array if layout is None else array.transpose(np.argsort(_KERAS_AXES[layout]))


def _walk(layer: keras.layers.Layer, prefix: str, found: dict[str, tuple[keras.Variable, str | None]]) -> None:
    builtin = next((table for kind, table in BUILTIN_VARIABLES.items() if type(layer) is kind), None)
    children = layer._flatten_layers(include_self=False, recursive=False)  # what keras.Model.layers lists
    inherited = {id(variable) for child in children for variable in child.weights}
    for variable in layer.weights:
        if id(variable) in inherited:
            continue
        if builtin is None:
            found[prefix + variable.name] = (variable, None)
        elif variable.name in builtin:
            name, layout = builtin[variable.name]
            found[prefix + name] = (variable, layout)
        else:
            raise KeyError(f"no PyTorch name for variable {variable.name!r} of {type(layer).__name__} {prefix!r}")
    for child in children:
        _walk(child, prefix + child.name + ".", found)


def torch_named_variables(model: keras.layers.Layer) -> dict[str, tuple[keras.Variable, str | None]]:
    """PyTorch parameter name -> (Keras variable, layout) for every weight of ``model``."""
    found: dict[str, tuple[keras.Variable, str | None]] = {}
    _walk(model, "", found)
    named = {id(variable) for variable, _ in found.values()}
    unnamed = [variable.path for variable in model.weights if id(variable) not in named]
    if unnamed or len(named) != len(found):
        raise RuntimeError(f"Keras variables without a unique PyTorch name: {unnamed or sorted(found)}")
    return found


def load_torch_state_dict(model: keras.layers.Layer, state: Mapping[str, torch.Tensor | np.ndarray]) -> None:
    """Assign a PyTorch state dict (our parameter names) to the Keras variables; every
    variable must be given, with the right shape."""
    named = torch_named_variables(model)
    state = {key: value for key, value in state.items() if not key.endswith(TORCH_ONLY_SUFFIXES)}
    missing, unexpected = sorted(set(named) - set(state)), sorted(set(state) - set(named))
    if missing or unexpected:
        raise KeyError(
            f"the PyTorch weights do not fit {type(model).__name__}: missing {missing}, unexpected {unexpected}"
        )
    for key, (variable, layout) in named.items():
        value = state[key]
        array = value.detach().cpu().float().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        array = to_keras_layout(array, layout)
        if tuple(array.shape) != tuple(variable.shape):
            raise ValueError(f"{key}: PyTorch tensor of shape {tuple(value.shape)} does not fit Keras variable "
                             f"{variable.path} of shape {tuple(variable.shape)}")
        variable.assign(array.astype(variable.dtype))


def torch_state_dict(model: keras.layers.Layer) -> dict[str, torch.Tensor]:
    """The Keras variables as a PyTorch state dict under our parameter names."""
    return {
        key: torch.from_numpy(np.ascontiguousarray(to_torch_layout(variable.numpy(), layout)))
        for key, (variable, layout) in torch_named_variables(model).items()
    }
