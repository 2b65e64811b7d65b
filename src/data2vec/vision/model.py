"""data2vec vision: the BEiT-style pre-norm encoder over image patches.

pixels -> patch embeddings (+ CLS, optional mask token, optional absolute positions)
       -> pre-norm transformer blocks (layer scale, stochastic depth, relative position bias
          added to the attention scores) -> final LayerNorm (CLS pooling) or mean pooling.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..core.attention import Attention
from ..core.encoder import AttentionBias, Encoder
from ..core.layers import PreNormBlock, block_arguments
from ..core.modeling import Backbone, Embedded, ModelFamily, init_standard
from ..core.outputs import EncoderOutput, encoder_output
from . import checkpoint_keys
from .config import Data2VecVisionConfig
from .embeddings import RelativePositionBias, VisionEmbeddings


class VisionPooler(nn.Module):
    """Mean of the patch tokens followed by LayerNorm (``use_mean_pooling``), or the CLS token."""

    def __init__(self, config: Data2VecVisionConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps) if config.use_mean_pooling else None

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.norm is None:
            return hidden_states[:, 0]  # (batch, hidden)
        return self.norm(hidden_states[:, 1:].mean(dim=1))  # (batch, hidden)


def _init_vision_weights(config: Data2VecVisionConfig, module: nn.Module) -> None:
    if init_standard(module, config.initializer_range, linear_types=(nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
        return
    if isinstance(module, VisionEmbeddings):
        for token in (module.cls_token, module.mask_token, module.position_embeddings):
            if token is not None:
                nn.init.zeros_(token)
    elif isinstance(module, RelativePositionBias):
        nn.init.zeros_(module.table)
    elif isinstance(module, Attention) and hasattr(module, "query_bias"):
        nn.init.zeros_(module.query_bias)
        nn.init.zeros_(module.value_bias)
    elif isinstance(module, PreNormBlock) and module.attention_scale is not None:
        nn.init.constant_(module.attention_scale, config.layer_scale_init_value)
        nn.init.constant_(module.mlp_scale, config.layer_scale_init_value)


def init_for_pretraining(model: Data2VecVisionModel, std: float | None = None, *, depth_rescale: bool = True) -> None:
    """BEiT's pretraining initialisation, which data2vec 1.0 image pretraining uses
    (``VisionTransformerForCyclicalTraining`` in data2vec_vision beit/modeling_cyclical.py, as
    ``VisionTransformerForMaskedImageModeling`` in BEiT's modeling_pretrain.py), in place.

    Truncated normal of std ``std`` (default ``config.initializer_range``, 0.02) cut at
    -std and +std (BEiT's ``trunc_normal_`` passes ``a=-std, b=std``; the spread left is about
    0.54 std): the weights of every Linear and of the patch Conv2d (zero biases), the CLS token,
    the mask token and the absolute position embeddings. LayerNorms 1 / 0. Unchanged from the
    model's own init: zero query/value biases and relative position tables, layer scale at
    ``layer_scale_init_value``. Then, with ``depth_rescale``, block i (1-based) has its attention
    output projection and its fc2 weight divided by sqrt(2 i) (BEiT's ``fix_init_weight``)."""
    std = model.config.initializer_range if std is None else std

    def truncated_normal(tensor: torch.Tensor) -> None:
        nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-std, b=std)

    embeddings = model.embeddings
    with torch.no_grad():
        for token in (embeddings.position_embeddings, embeddings.cls_token, embeddings.mask_token):
            if token is not None:
                truncated_normal(token)
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                truncated_normal(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm) and module.weight is not None:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if depth_rescale:
            for layer_id, block in enumerate(model.encoder.layers, start=1):
                block.attention.out_proj.weight.div_(math.sqrt(2.0 * layer_id))
                block.mlp.fc2.weight.div_(math.sqrt(2.0 * layer_id))


def uses_positions(config: Data2VecVisionConfig) -> bool:
    """Whether the model has positions tied to the patch grid it was built for (absolute position
    embeddings or relative position tables): then other image sizes need ``interpolate_pos_encoding``."""
    return (
        config.use_absolute_position_embeddings
        or config.use_shared_relative_position_bias
        or config.use_relative_position_bias
    )


VISION = ModelFamily(Data2VecVisionConfig, "data2vec_vision", checkpoint_keys.BACKBONE_KEYS, _init_vision_weights)


class Data2VecVisionModel(Backbone):
    """The image encoder. ``add_pooling_layer`` (off by default, as in the reference) adds
    ``pooler_output``: the LayerNorm'd mean of the patch tokens, or the CLS token."""

    family = VISION

    def __init__(self, config: Data2VecVisionConfig, add_pooling_layer: bool = False) -> None:
        super().__init__(config)
        grid = config.patch_grid
        self.embeddings = VisionEmbeddings(config)
        self.shared_relative_position_bias = (
            RelativePositionBias(grid, config.num_attention_heads) if config.use_shared_relative_position_bias else None
        )
        self.layer_relative_position_biases = (
            nn.ModuleList(RelativePositionBias(grid, config.num_attention_heads) for _ in range(config.num_hidden_layers))
            if config.use_relative_position_bias
            else None
        )
        block = block_arguments(config, config.hidden_dropout_prob, config.attention_probs_dropout_prob)
        # stochastic depth grows linearly from 0 at the first layer to drop_path_rate at the last
        drop_path_rates = torch.linspace(0, config.drop_path_rate, config.num_hidden_layers).tolist()
        self.encoder = Encoder(
            PreNormBlock(**block, layer_scale_init_value=config.layer_scale_init_value, drop_path_rate=rate, qkv_bias="query_value")
            for rate in drop_path_rates
        )
        self.norm = None if config.use_mean_pooling else nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.pooler = VisionPooler(config) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Conv2d:
        return self.embeddings.patch_embedding

    def final_states(self, hidden_states: torch.Tensor, embedded: Embedded) -> torch.Tensor:
        return self.norm(hidden_states) if self.norm is not None else hidden_states

    def patch_grid_of(self, pixel_values: torch.Tensor, interpolate_pos_encoding: bool) -> tuple[int, int]:
        """Check ``pixel_values`` and return its (rows, columns) of patches."""
        config = self.config
        if not isinstance(pixel_values, torch.Tensor) or pixel_values.dim() != 4:
            shape = tuple(pixel_values.shape) if isinstance(pixel_values, torch.Tensor) else type(pixel_values).__name__
            raise ValueError(f"pixel_values must be a (batch, channels, height, width) tensor, got {shape}")
        _, channels, height, width = pixel_values.shape
        if channels != config.num_channels:
            raise ValueError(
                f"pixel_values have {channels} channels but the model expects num_channels={config.num_channels} "
                f"(shape {tuple(pixel_values.shape)}; images go in as (batch, channels, height, width))"
            )
        return config.grid_for_image(
            height, width, uses_positions=uses_positions(config), interpolate_pos_encoding=interpolate_pos_encoding
        )

    def _check_mask(self, bool_masked_pos: torch.Tensor, batch: int, grid: tuple[int, int]) -> torch.Tensor:
        if self.embeddings.mask_token is None:
            raise ValueError(
                "bool_masked_pos was given but the model has no mask token: build it with use_mask_token=True"
            )
        expected = (batch, grid[0] * grid[1])
        if tuple(bool_masked_pos.shape) != expected:
            raise ValueError(
                f"bool_masked_pos has shape {tuple(bool_masked_pos.shape)}, expected (batch, patches) = {expected} "
                f"for this {grid[0]}x{grid[1]} patch grid"
            )
        if bool_masked_pos.is_floating_point() or bool_masked_pos.is_complex():
            raise ValueError(f"bool_masked_pos must be bool (or 0/1 integers), got {bool_masked_pos.dtype}")
        return bool_masked_pos.to(device=self.embeddings.cls_token.device, dtype=torch.bool)

    def attention_bias(self, grid: tuple[int, int]) -> AttentionBias:
        """The additive relative position bias (1, heads, tokens, tokens): one tensor for every
        block (shared table only), a function of the block index (per-block tables), or None."""
        shared = self.shared_relative_position_bias(grid) if self.shared_relative_position_bias is not None else None
        if self.layer_relative_position_biases is None:
            return shared

        def bias_of_block(index: int) -> torch.Tensor:
            own = self.layer_relative_position_biases[index](grid)
            return own if shared is None else shared + own

        return bias_of_block

    def embed(
        self,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.Tensor | None = None,
        interpolate_pos_encoding: bool = False,
    ) -> Embedded:
        """Check the images; patches + CLS (+ mask token, + absolute positions) and the relative
        position bias. ``extras["grid"]``: the (rows, columns) patch grid."""
        grid = self.patch_grid_of(pixel_values, interpolate_pos_encoding)
        if bool_masked_pos is not None:
            bool_masked_pos = self._check_mask(bool_masked_pos, pixel_values.shape[0], grid)
        hidden_states = self.embeddings(pixel_values, bool_masked_pos)  # (batch, 1 + patches, hidden)
        return Embedded(hidden_states, self.attention_bias(grid), {"grid": grid})

    def forward(
        self,
        pixel_values: torch.Tensor,
        bool_masked_pos: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        interpolate_pos_encoding: bool = False,
    ) -> EncoderOutput:
        """pixel_values: (batch, num_channels, height, width). bool_masked_pos: (batch, patches),
        True where the patch is replaced by the mask token (needs ``use_mask_token``).

        ``hidden_states`` are the embeddings and each block's output (the residual stream,
        before the final LayerNorm): the targets of data2vec vision pretraining."""
        embedded = self.embed(pixel_values, bool_masked_pos, interpolate_pos_encoding)
        result = self.run_encoder(
            embedded, output_attentions=output_attentions, output_hidden_states=output_hidden_states
        )
        return encoder_output(result, self.pooler)
