"""Keras 3 layers of the vision encoder, written with ``keras.ops`` only.

Same computation as the PyTorch modules (``vision/embeddings.py``, ``core/attention.py``,
``core/layers.py``); images are channels-last inside (Keras' convolutions are), the public
classes take and give NCHW like the PyTorch ones. Every layer is named after the PyTorch
module it mirrors (``layers.3``, ``attention``, ``qkv``...): ``weights.py`` reads the
PyTorch parameter names off those names. All variables are made in ``__init__``.
"""

from __future__ import annotations

import keras
import numpy as np
import torch
from keras import ops

from ...core.encoder import resolve_indices
from ...core.layers import activation as core_activation
from ..config import Data2VecVisionConfig, as_pair
from ..embeddings import relative_position_index
from . import resize


def normal(std: float) -> keras.initializers.Initializer:
    return keras.initializers.RandomNormal(stddev=std)


def _gelu_tanh(x):
    return ops.gelu(x, approximate=True)


def _gelu(x):
    return ops.gelu(x, approximate=False)


# the Keras form of each of ``core.layers.ACTIVATIONS``
ACTIVATIONS = {
    "gelu": _gelu, "gelu_python": _gelu, "gelu_pytorch_tanh": _gelu_tanh, "quick_gelu": lambda x: x * ops.sigmoid(1.702 * x),
    "relu": ops.relu, "silu": ops.silu, "tanh": ops.tanh, "sigmoid": ops.sigmoid, "linear": lambda x: x,
}


def activation(name: str):
    return core_activation(name, ACTIVATIONS)


def dense(units: int, in_features: int, name: str, std: float, use_bias: bool = True) -> keras.layers.Dense:
    layer = keras.layers.Dense(units, use_bias=use_bias, kernel_initializer=normal(std), name=name)
    layer.build((None, in_features))
    return layer


def layer_norm(features: int, eps: float, name: str) -> keras.layers.LayerNormalization:
    layer = keras.layers.LayerNormalization(epsilon=eps, name=name)
    layer.build((None, features))
    return layer


# ---------------------------------------------------------------------------- embeddings
class VisionEmbeddings(keras.layers.Layer):
    """Patches (strided convolution) + CLS token, optional mask token and absolute positions."""

    def __init__(self, config: Data2VecVisionConfig, name: str = "embeddings") -> None:
        super().__init__(name=name)
        hidden = config.hidden_size
        self.grid = config.patch_grid  # the grid the position embeddings were trained for
        patch = as_pair(config.patch_size, "patch_size")
        self.patch_embedding = keras.layers.Conv2D(
            hidden, kernel_size=patch, strides=patch, padding="valid",
            kernel_initializer=normal(config.initializer_range), name="patch_embedding",
        )
        self.patch_embedding.build((None, None, None, config.num_channels))
        self.cls_token = self.add_weight(shape=(1, 1, hidden), initializer="zeros", name="cls_token")
        self.mask_token = (
            self.add_weight(shape=(1, 1, hidden), initializer="zeros", name="mask_token") if config.use_mask_token else None
        )
        num_tokens = 1 + self.grid[0] * self.grid[1]
        self.position_embeddings = (
            self.add_weight(shape=(1, num_tokens, hidden), initializer="zeros", name="position_embeddings")
            if config.use_absolute_position_embeddings
            else None
        )
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob)
        self.built = True

    def position_embeddings_for(self, grid: tuple[int, int]):
        """(1, 1 + rows * cols, hidden); the patch part resized bicubically for another grid."""
        if grid == self.grid:
            return self.position_embeddings
        hidden = self.position_embeddings.shape[-1]
        as_image = ops.reshape(self.position_embeddings[:, 1:], (1, *self.grid, hidden))
        resized = resize.resize(as_image, grid, mode="bicubic")  # (1, rows, cols, hidden)
        patch_positions = ops.reshape(resized, (1, grid[0] * grid[1], hidden))
        return ops.concatenate([self.position_embeddings[:, :1], patch_positions], axis=1)

    def call(self, pixel_values, bool_masked_pos=None, training=False):
        """pixel_values: (batch, height, width, channels); bool_masked_pos: (batch, patches) bool.
        Returns (batch, 1 + patches, hidden)."""
        patches = self.patch_embedding(pixel_values)  # (batch, rows, cols, hidden)
        rows, cols, hidden = patches.shape[1], patches.shape[2], patches.shape[3]
        embeddings = ops.reshape(patches, (-1, rows * cols, hidden))  # row-major, like the PyTorch flatten
        if bool_masked_pos is not None:
            mask_token = ops.cast(self.mask_token, embeddings.dtype)
            embeddings = ops.where(bool_masked_pos[..., None], mask_token, embeddings)
        cls = ops.zeros_like(embeddings[:, :1]) + ops.cast(self.cls_token, embeddings.dtype)  # (batch, 1, hidden)
        embeddings = ops.concatenate([cls, embeddings], axis=1)
        if self.position_embeddings is not None:
            embeddings = embeddings + ops.cast(self.position_embeddings_for((rows, cols)), embeddings.dtype)
        return self.dropout(embeddings, training=training)


class RelativePositionBias(keras.layers.Layer):
    """A learned (offsets + 3, heads) table; ``bias_for(grid)`` is the additive attention bias
    (1, heads, tokens, tokens) of a patch grid (offset part resized bilinearly for another grid)."""

    def __init__(self, grid: tuple[int, int], num_heads: int, name: str) -> None:
        super().__init__(name=name)
        self.grid = grid
        size = (2 * grid[0] - 1) * (2 * grid[1] - 1) + 3
        self.table = self.add_weight(shape=(size, num_heads), initializer="zeros", name="table")
        self.built = True

    def table_for(self, grid: tuple[int, int]):
        if grid == self.grid:
            return self.table
        heads = self.table.shape[-1]
        offsets = ops.reshape(self.table[:-3], (1, 2 * self.grid[0] - 1, 2 * self.grid[1] - 1, heads))
        size = (2 * grid[0] - 1, 2 * grid[1] - 1)
        resized = ops.reshape(resize.resize(offsets, size, mode="bilinear"), (size[0] * size[1], heads))
        return ops.concatenate([resized, self.table[-3:]], axis=0)

    def bias_for(self, grid: tuple[int, int]):
        index = relative_position_index(tuple(grid)).numpy().astype(np.int32)  # (tokens, tokens)
        tokens = index.shape[0]
        bias = ops.take(self.table_for(grid), ops.convert_to_tensor(index.reshape(-1)), axis=0)  # (tokens^2, heads)
        bias = ops.reshape(bias, (tokens, tokens, -1))
        return ops.expand_dims(ops.transpose(bias, (2, 0, 1)), 0)  # (1, heads, tokens, tokens)


# ---------------------------------------------------------------------------- encoder block
class Attention(keras.layers.Layer):
    """Multi-head self attention with a fused q/k/v projection; the key projection has no
    bias (BEiT), so the fused bias is (query_bias, 0, value_bias)."""

    def __init__(self, hidden_size: int, num_heads: int, dropout: float, std: float, name: str = "attention") -> None:
        super().__init__(name=name)
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.qkv = dense(3 * hidden_size, hidden_size, "qkv", std, use_bias=False)
        self.query_bias = self.add_weight(shape=(hidden_size,), initializer="zeros", name="query_bias")
        self.value_bias = self.add_weight(shape=(hidden_size,), initializer="zeros", name="value_bias")
        self.out_proj = dense(hidden_size, hidden_size, "out_proj", std)
        self.dropout = keras.layers.Dropout(dropout)
        self.built = True

    def call(self, hidden_states, attention_bias=None, training=False):
        """hidden_states: (batch, tokens, hidden); attention_bias: additive, (1, heads, tokens, tokens).
        Returns (output (batch, tokens, hidden), probabilities (batch, heads, tokens, tokens))."""
        tokens = hidden_states.shape[1]
        bias = ops.concatenate([self.query_bias, ops.zeros_like(self.query_bias), self.value_bias])
        qkv = self.qkv(hidden_states) + ops.cast(bias, hidden_states.dtype)  # (batch, tokens, 3 * hidden)
        qkv = ops.reshape(qkv, (-1, tokens, 3, self.num_heads, self.head_dim))
        query, key, value = ops.unstack(ops.transpose(qkv, (2, 0, 3, 1, 4)), 3)  # (batch, heads, tokens, head_dim)
        scores = ops.einsum("bhqd,bhkd->bhqk", query, key) * (self.head_dim**-0.5)
        if attention_bias is not None:
            scores = scores + ops.cast(attention_bias, scores.dtype)
        probabilities = ops.softmax(scores, axis=-1)
        context = ops.einsum("bhqk,bhkd->bhqd", self.dropout(probabilities, training=training), value)
        context = ops.reshape(ops.transpose(context, (0, 2, 1, 3)), (-1, tokens, self.num_heads * self.head_dim))
        return self.out_proj(context), probabilities


class MLP(keras.layers.Layer):
    """fc1 -> activation -> fc2."""

    def __init__(self, hidden_size: int, intermediate_size: int, act: str, std: float, name: str = "mlp") -> None:
        super().__init__(name=name)
        self.fc1 = dense(intermediate_size, hidden_size, "fc1", std)
        self.act = activation(act)
        self.fc2 = dense(hidden_size, intermediate_size, "fc2", std)
        self.built = True

    def call(self, x):
        return self.fc2(self.act(self.fc1(x)))


class DropPath(keras.layers.Layer):
    """Stochastic depth: in training, zero a sample's residual branch with probability ``rate``
    and scale the kept ones by 1 / (1 - rate)."""

    def __init__(self, rate: float, name: str = "drop_path") -> None:
        super().__init__(name=name)
        self.rate = rate
        self.seed_generator = keras.random.SeedGenerator() if rate > 0 else None
        self.built = True

    def call(self, x, training=False):
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        noise = keras.random.uniform(ops.shape(x)[:1] + (1,) * (len(x.shape) - 1), seed=self.seed_generator)
        return x * ops.cast(noise < keep, x.dtype) / keep


class PreNormBlock(keras.layers.Layer):
    """Pre-norm block (``core.layers.PreNormBlock``):
    x = x + drop_path(scale * attention(norm(x))); x = x + drop_path(scale * mlp(norm(x)))."""

    def __init__(self, config: Data2VecVisionConfig, drop_path_rate: float, name: str) -> None:
        super().__init__(name=name)
        hidden, std = config.hidden_size, config.initializer_range
        self.attention = Attention(hidden, config.num_attention_heads, config.attention_probs_dropout_prob, std)
        self.attention_norm = layer_norm(hidden, config.layer_norm_eps, "attention_norm")
        self.mlp = MLP(hidden, config.intermediate_size, config.hidden_act, std)
        self.mlp_norm = layer_norm(hidden, config.layer_norm_eps, "mlp_norm")
        self.dropout = keras.layers.Dropout(config.hidden_dropout_prob)
        self.drop_path = DropPath(drop_path_rate)
        scale = config.layer_scale_init_value
        if scale and scale > 0:
            init = keras.initializers.Constant(float(scale))
            self.attention_scale = self.add_weight(shape=(hidden,), initializer=init, name="attention_scale")
            self.mlp_scale = self.add_weight(shape=(hidden,), initializer=init, name="mlp_scale")
        else:
            self.attention_scale = self.mlp_scale = None
        self.built = True

    def call(self, hidden_states, attention_bias=None, training=False):
        """hidden_states: (batch, tokens, hidden). Returns (hidden_states, attention probabilities)."""
        attended, probabilities = self.attention(self.attention_norm(hidden_states), attention_bias, training=training)
        attended = self.dropout(attended, training=training)
        if self.attention_scale is not None:
            attended = self.attention_scale * attended
        hidden_states = hidden_states + self.drop_path(attended, training=training)
        branch = self.dropout(self.mlp(self.mlp_norm(hidden_states)), training=training)
        if self.mlp_scale is not None:
            branch = self.mlp_scale * branch
        return hidden_states + self.drop_path(branch, training=training), probabilities


class Encoder(keras.layers.Layer):
    """The block loop (``core.encoder.Encoder``): ``attention_bias`` is one tensor for every block,
    a function of the block index, or None; ``indices`` picks block outputs in hidden-state
    numbering (0 = input, n = block n, negative from the end)."""

    def __init__(self, config: Data2VecVisionConfig, name: str = "encoder") -> None:
        super().__init__(name=name)
        self.blocks = [  # PyTorch: ``layers``
            PreNormBlock(config, rate, f"layers.{index}") for index, rate in enumerate(drop_path_rates(config))
        ]
        self.built = True

    def call(self, hidden_states, attention_bias=None, indices=(), output_hidden_states=False,
             output_attentions=False, training=False):
        """Returns (last hidden states, the asked-for block outputs, all hidden states or None,
        attentions or None)."""
        wanted = resolve_indices(list(indices), len(self.blocks))
        collected = {0: hidden_states}
        all_hidden = [hidden_states] if output_hidden_states else None
        all_attentions = [] if output_attentions else None
        for index, block in enumerate(self.blocks):
            bias = attention_bias(index) if callable(attention_bias) else attention_bias
            hidden_states, probabilities = block(hidden_states, bias, training=training)
            if index + 1 in wanted:
                collected[index + 1] = hidden_states
            if all_hidden is not None:
                all_hidden.append(hidden_states)
            if all_attentions is not None:
                all_attentions.append(probabilities)
        return (
            hidden_states,
            tuple(collected[number] for number in wanted),
            tuple(all_hidden) if all_hidden is not None else None,
            tuple(all_attentions) if all_attentions is not None else None,
        )


class VisionPooler(keras.layers.Layer):
    """Mean of the patch tokens followed by LayerNorm (``use_mean_pooling``), or the CLS token."""

    def __init__(self, config: Data2VecVisionConfig, name: str = "pooler") -> None:
        super().__init__(name=name)
        self.norm = (
            layer_norm(config.hidden_size, config.layer_norm_eps, "norm") if config.use_mean_pooling else None
        )
        self.built = True

    def call(self, hidden_states):
        if self.norm is None:
            return hidden_states[:, 0]  # (batch, hidden)
        return self.norm(ops.mean(hidden_states[:, 1:], axis=1))  # (batch, hidden)


def drop_path_rates(config: Data2VecVisionConfig) -> list[float]:
    """Stochastic depth grows linearly from 0 at the first layer to drop_path_rate at the last
    (the same numbers as the PyTorch class)."""
    return torch.linspace(0, config.drop_path_rate, config.num_hidden_layers).tolist()
