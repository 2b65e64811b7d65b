"""The task losses of the vision heads in ``keras.ops``; the same formulas as
``data2vec.core.losses`` and the PyTorch segmentation head."""

from __future__ import annotations

import keras
from keras import ops


def is_integer(x) -> bool:
    dtype = keras.backend.standardize_dtype(x.dtype)
    return "int" in dtype


def cross_entropy(logits, labels, ignore_index: int | None = None):
    """logits: (n, classes); labels: (n,) class ids. Mean over the labels that are not ``ignore_index``
    (NaN when all are, as in PyTorch)."""
    labels = ops.cast(labels, "int32")
    log_probabilities = ops.log_softmax(logits, axis=-1)
    if ignore_index is None:
        kept = ops.ones_like(labels, dtype=logits.dtype)
    else:
        kept = ops.cast(ops.not_equal(labels, ignore_index), logits.dtype)
        labels = ops.where(ops.equal(labels, ignore_index), ops.zeros_like(labels), labels)
    picked = ops.take_along_axis(log_probabilities, labels[:, None], axis=1)[:, 0]  # (n,)
    return -ops.sum(picked * kept) / ops.sum(kept)


def binary_cross_entropy_with_logits(logits, targets):
    """Mean of max(x, 0) - x * t + log(1 + exp(-|x|)) (the numerically stable form)."""
    return ops.mean(ops.relu(logits) - logits * targets + ops.log1p(ops.exp(-ops.abs(logits))))


def sequence_classification_loss(logits, labels, problem_type: str | None):
    """logits: (batch, num_labels). Regression: mean squared error; single label: cross entropy
    over class ids; multi label: binary cross entropy with logits over 0/1 targets. With no
    ``problem_type``: one label means regression, integer labels single label, else multi label."""
    labels = ops.convert_to_tensor(labels)
    num_labels = logits.shape[-1]
    if problem_type is None:
        if num_labels == 1:
            problem_type = "regression"
        elif is_integer(labels):
            problem_type = "single_label_classification"
        else:
            problem_type = "multi_label_classification"
    if problem_type == "regression":
        labels = ops.cast(labels, logits.dtype)
        if num_labels == 1:
            return ops.mean(ops.square(ops.reshape(logits, (-1,)) - ops.reshape(labels, (-1,))))
        return ops.mean(ops.square(logits - labels))
    if problem_type == "single_label_classification":
        return cross_entropy(ops.reshape(logits, (-1, num_labels)), ops.reshape(labels, (-1,)))
    if problem_type == "multi_label_classification":
        return binary_cross_entropy_with_logits(logits, ops.cast(labels, logits.dtype))
    raise ValueError(f"unknown problem_type {problem_type!r}")
