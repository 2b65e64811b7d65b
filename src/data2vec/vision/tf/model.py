"""Keras 3 port of the vision encoder (``TFData2VecVisionModel``) and the base class of the
TF models: checkpoints in, checkpoints out, and export for serving.

Checkpoints are the PyTorch classes' files. ``from_pretrained`` loads the folder or Hub repo
with the PyTorch class of the same name (config overrides, reference names through
``vision/checkpoint_keys.py``, missing/unexpected warnings, freshly initialised heads) and
copies its weights into Keras variables; ``save_pretrained`` does the reverse, so the folder
it writes is the one the PyTorch class writes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import keras
from keras import ops

from ..config import Data2VecVisionConfig, as_pair
from ..model import Data2VecVisionModel, uses_positions
from . import weights
from .layers import Encoder, RelativePositionBias, VisionEmbeddings, VisionPooler, layer_norm
from .outputs import TFEncoderOutput


class TFData2VecVisionPreTrainedModel(keras.Model):
    """Base of the Keras vision models. ``torch_class`` is the PyTorch class with the same
    parameters; the call takes ``pixel_values`` as (batch, channels, height, width)."""

    config_class: ClassVar[type] = Data2VecVisionConfig
    torch_class: ClassVar[type] = Data2VecVisionModel
    # the fields of the output that the serving signature of ``export`` returns
    serving_outputs: ClassVar[tuple[str, ...]] = ("logits",)

    def __init__(self, config: Data2VecVisionConfig, name: str | None = None) -> None:
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(config).__name__}")
        super().__init__(name=name)
        self.config = config

    # ------------------------------------------------------------ checkpoints
    @classmethod
    def from_torch(cls, torch_model) -> "TFData2VecVisionPreTrainedModel":
        """The Keras twin of a PyTorch model of ``torch_class`` (same config, same weights)."""
        if not isinstance(torch_model, cls.torch_class):
            raise TypeError(f"{cls.__name__}.from_torch takes a {cls.torch_class.__name__}, got {type(torch_model).__name__}")
        model = cls(torch_model.config, **cls.build_options_of(torch_model))
        weights.load_torch_state_dict(model, torch_model.state_dict())
        return model

    @classmethod
    def build_options_of(cls, model) -> dict[str, Any]:
        """Constructor arguments besides the config that a model (of either framework) was built with."""
        return {}

    def to_torch(self):
        """A PyTorch model of ``torch_class`` with this model's config and weights (in eval mode)."""
        torch_model = self.torch_class(self.config, **self.build_options_of(self))
        result = torch_model.load_state_dict(weights.torch_state_dict(self), strict=False)
        left = [key for key in result.missing_keys if not key.endswith(weights.TORCH_ONLY_SUFFIXES)]
        if left or result.unexpected_keys:
            raise RuntimeError(f"Keras and PyTorch parameters differ: missing {left}, unexpected {result.unexpected_keys}")
        return torch_model.eval()

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo: str | os.PathLike,
        *,
        config: Data2VecVisionConfig | None = None,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        ignore_mismatched_sizes: bool = False,
        output_loading_info: bool = False,
        **config_overrides: Any,
    ):
        """Load a folder or Hub repo in the Hugging Face layout (``config.json`` + ``model.safetensors``,
        ``pytorch_model.bin`` or a sharded index): the files the PyTorch class loads. Extra keyword
        arguments override keys of ``config.json`` (e.g. ``num_labels=5``)."""
        torch_model, info = cls.torch_class.from_pretrained(
            path_or_repo, config=config, revision=revision, cache_dir=cache_dir,
            ignore_mismatched_sizes=ignore_mismatched_sizes, output_loading_info=True, **config_overrides,
        )
        model = cls.from_torch(torch_model)
        return (model, info) if output_loading_info else model

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` + ``model.safetensors`` as the PyTorch class writes them (and loads them)."""
        return self.to_torch().save_pretrained(directory)

    def get_config(self) -> dict[str, Any]:
        raise NotImplementedError(
            f"{type(self).__name__} is not saved in Keras' own formats (model.save, to_json): use "
            "save_pretrained(directory) for a checkpoint the PyTorch classes share, or export(path) for serving"
        )

    # ------------------------------------------------------------ serving
    def export(self, filepath, format: str = "tf_saved_model", verbose: bool | None = None, input_signature=None, **kwargs):
        """Keras' ``export``. For ``format="tf_saved_model"`` the endpoint ``serve`` (also the
        ``serving_default`` signature) takes ``pixel_values`` (batch, channels, height, width)
        float32, by default of ``image_size``, and returns a dict of ``serving_outputs``."""
        if format != "tf_saved_model":
            return super().export(filepath, format=format, verbose=verbose, input_signature=input_signature, **kwargs)
        if input_signature is None:
            height, width = as_pair(self.config.image_size, "image_size")
            input_signature = [keras.InputSpec(shape=(None, self.config.num_channels, height, width), dtype="float32")]

        def serve(pixel_values):
            output = self(pixel_values, training=False)
            return {name: getattr(output, name) for name in self.serving_outputs if getattr(output, name) is not None}

        archive = keras.export.ExportArchive()
        archive.track(self)
        archive.add_endpoint("serve", serve, input_signature, **kwargs)
        archive.write_out(filepath, verbose=True if verbose is None else verbose)


class TFData2VecVisionModel(TFData2VecVisionPreTrainedModel):
    """The image encoder (BEiT-style pre-norm transformer over patches). ``add_pooling_layer``
    (off by default) adds ``pooler_output``: the LayerNorm'd mean of the patch tokens, or CLS."""

    serving_outputs = ("last_hidden_state", "pooler_output")

    def __init__(self, config: Data2VecVisionConfig, add_pooling_layer: bool = False, name: str | None = None) -> None:
        super().__init__(config, name=name)
        grid, heads = config.patch_grid, config.num_attention_heads
        self.embeddings = VisionEmbeddings(config)
        self.shared_relative_position_bias = (
            RelativePositionBias(grid, heads, "shared_relative_position_bias")
            if config.use_shared_relative_position_bias
            else None
        )
        self.layer_relative_position_biases = (
            [RelativePositionBias(grid, heads, f"layer_relative_position_biases.{i}") for i in range(config.num_hidden_layers)]
            if config.use_relative_position_bias
            else None
        )
        self.encoder = Encoder(config)
        self.norm = None if config.use_mean_pooling else layer_norm(config.hidden_size, config.layer_norm_eps, "norm")
        self.pooler = VisionPooler(config) if add_pooling_layer else None
        self.built = True

    @classmethod
    def build_options_of(cls, model) -> dict[str, Any]:
        return {"add_pooling_layer": model.pooler is not None}

    def channels_last(self, pixel_values):
        """Check (batch, channels, height, width) pixel values and return them as
        (batch, height, width, channels) in the compute dtype."""
        pixel_values = ops.convert_to_tensor(pixel_values)
        shape = tuple(pixel_values.shape)
        if len(shape) != 4:
            raise ValueError(f"pixel_values must be a (batch, channels, height, width) tensor, got {shape}")
        if shape[1] != self.config.num_channels:
            raise ValueError(
                f"pixel_values have {shape[1]} channels but the model expects num_channels={self.config.num_channels} "
                f"(shape {shape}; images go in as (batch, channels, height, width), like the PyTorch classes)"
            )
        if shape[2] is None or shape[3] is None:
            raise ValueError(
                f"pixel_values of shape {shape}: the height and width must be known when the model is traced "
                "(give tf.function an input_signature with fixed height and width)"
            )
        return ops.transpose(ops.cast(pixel_values, self.compute_dtype), (0, 2, 3, 1))

    def patch_grid_of(self, pixel_values, interpolate_pos_encoding: bool) -> tuple[int, int]:
        """(rows, columns) of patches of (batch, channels, height, width) pixel values; checks the size."""
        config = self.config
        height, width = tuple(pixel_values.shape)[2:]
        return config.grid_for_image(
            height, width, uses_positions=uses_positions(config), interpolate_pos_encoding=interpolate_pos_encoding
        )

    def _check_mask(self, bool_masked_pos, batch: int | None, grid: tuple[int, int]):
        if self.embeddings.mask_token is None:
            raise ValueError("bool_masked_pos was given but the model has no mask token: build it with use_mask_token=True")
        bool_masked_pos = ops.convert_to_tensor(bool_masked_pos)
        shape = tuple(bool_masked_pos.shape)
        expected = (batch, grid[0] * grid[1])
        if len(shape) != 2 or shape[1] != expected[1] or (None not in (batch, shape[0]) and shape[0] != batch):
            raise ValueError(
                f"bool_masked_pos has shape {shape}, expected (batch, patches) = {expected} "
                f"for this {grid[0]}x{grid[1]} patch grid"
            )
        dtype = keras.backend.standardize_dtype(bool_masked_pos.dtype)
        if dtype != "bool" and "int" not in dtype:
            raise ValueError(f"bool_masked_pos must be bool (or 0/1 integers), got {dtype}")
        return ops.cast(bool_masked_pos, "bool")

    def attention_bias(self, grid: tuple[int, int]):
        """The relative position bias (1, heads, tokens, tokens): a tensor, a function of the block
        index (per-block tables) or None, as in the PyTorch class."""
        shared = self.shared_relative_position_bias.bias_for(grid) if self.shared_relative_position_bias else None
        if self.layer_relative_position_biases is None:
            return shared

        def bias_of_block(index: int):
            own = self.layer_relative_position_biases[index].bias_for(grid)
            return own if shared is None else shared + own

        return bias_of_block

    def embed(self, pixel_values, bool_masked_pos=None, interpolate_pos_encoding=False, training=False):
        """Check the images; returns (embeddings (batch, 1 + patches, hidden), attention bias, grid)."""
        images = self.channels_last(pixel_values)  # (batch, height, width, channels)
        grid = self.patch_grid_of(pixel_values, interpolate_pos_encoding)
        if bool_masked_pos is not None:
            bool_masked_pos = self._check_mask(bool_masked_pos, images.shape[0], grid)
        hidden_states = self.embeddings(images, bool_masked_pos, training=training)
        return hidden_states, self.attention_bias(grid), grid

    def call(self, pixel_values, bool_masked_pos=None, output_attentions=False, output_hidden_states=False,
             interpolate_pos_encoding=False, training=False) -> TFEncoderOutput:
        """pixel_values: (batch, num_channels, height, width). bool_masked_pos: (batch, patches),
        True where the patch is replaced by the mask token (needs ``use_mask_token``).
        ``hidden_states`` are the embeddings and each block's output (before the final LayerNorm)."""
        hidden_states, bias, _ = self.embed(pixel_values, bool_masked_pos, interpolate_pos_encoding, training)
        hidden_states, _, all_hidden, all_attentions = self.encoder(
            hidden_states, attention_bias=bias, output_hidden_states=output_hidden_states, output_attentions=output_attentions,
            training=training,
        )
        sequence_output = self.norm(hidden_states) if self.norm is not None else hidden_states
        return TFEncoderOutput(
            last_hidden_state=sequence_output,
            pooler_output=self.pooler(sequence_output) if self.pooler is not None else None,
            hidden_states=all_hidden,
            attentions=all_attentions,
        )
