"""data2vec speech backbone: conv feature encoder -> projection -> (SpecAugment) -> positional
convolutions -> post-norm transformer -> optional strided conv adapter.

Also the sample-mask -> frame-mask arithmetic the heads share. SpecAugment's span sampler is
``core.masking.compute_span_mask`` (shared with data2vec pretraining; importable from here too).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..core.attention import attention_bias_from_masks
from ..core.encoder import Encoder, common_size_padding
from ..core.layers import PostNormBlock, block_arguments
from ..core.masking import compute_span_mask
from ..core.modeling import Backbone, Embedded, ModelFamily, init_standard
from ..core.outputs import AudioEncoderOutput
from . import checkpoint_keys
from .config import Data2VecAudioConfig
from .feature_encoder import (
    ConvFeatureEncoder,
    FeatureProjection,
    PositionalConvLayer,
    PositionalConvStack,
    feature_encoder_output_length,
    minimum_input_length,
)


# ---------------------------------------------------------------------------- frame arithmetic
def frame_attention_mask(
    attention_mask: torch.Tensor, num_frames: int, config: Data2VecAudioConfig, include_adapter: bool = False
) -> torch.Tensor:
    """(batch, samples) sample mask (right padding) -> (batch, num_frames) bool mask of the frames
    computed from real samples only."""
    lengths = feature_encoder_output_length(attention_mask.long().sum(-1), config, include_adapter)
    return torch.arange(num_frames, device=attention_mask.device)[None, :] < lengths[:, None]


def check_audio_inputs(
    config: Data2VecAudioConfig,
    input_values: torch.Tensor,
    attention_mask: torch.Tensor | None,
    check_values: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Validate the waveform batch and its mask at the model boundary. A 1-D waveform is one
    utterance; returns (input_values (batch, samples), attention_mask (batch, samples) or None).
    ``check_values``: also the checks that read values (finite samples, real lengths), which
    wait for an accelerator."""
    if not isinstance(input_values, torch.Tensor):
        raise TypeError(
            f"input_values must be a torch.Tensor, got {type(input_values).__name__}: "
            "use Data2VecAudioFeatureExtractor(..., return_tensors='pt') or torch.as_tensor"
        )
    if input_values.dim() == 1:
        input_values = input_values[None]
        if attention_mask is not None and attention_mask.dim() == 1:
            attention_mask = attention_mask[None]
    if input_values.dim() != 2:
        raise ValueError(
            f"input_values must be (batch, samples) or (samples,) raw mono audio, got shape {tuple(input_values.shape)}"
            + (": for stereo, average the channels first" if input_values.dim() == 3 else "")
        )
    if not input_values.is_floating_point():
        raise ValueError(
            f"input_values has dtype {input_values.dtype}; pass float waveforms (e.g. normalised by "
            "Data2VecAudioFeatureExtractor), not integer PCM samples"
        )
    include_adapter = config.add_adapter
    needed = minimum_input_length(config, include_adapter)
    samples = input_values.shape[1]
    if samples < needed:
        raise ValueError(
            f"the audio has {samples} samples but the convolutional feature encoder needs at least {needed} "
            f"(its receptive field, from conv_kernel={config.conv_kernel} and conv_stride={config.conv_stride}"
            + (" plus the adapter" if include_adapter else "")
            + "): pad or use longer audio"
        )
    if check_values and not torch.isfinite(input_values).all():
        raise ValueError("input_values contains NaN or infinite values: check the audio decoding and normalisation")
    if attention_mask is not None:
        if tuple(attention_mask.shape) != tuple(input_values.shape):
            raise ValueError(
                f"attention_mask has shape {tuple(attention_mask.shape)} but input_values is "
                f"{tuple(input_values.shape)}: expected one entry per sample, 1 for audio and 0 for padding"
            )
        lengths = attention_mask.long().sum(-1)
        if check_values and input_values.shape[0] and int(lengths.min()) < needed:
            row = int(lengths.argmin())
            raise ValueError(
                f"row {row} of attention_mask marks {int(lengths[row])} real samples, fewer than the {needed} "
                "the feature encoder needs for one frame: drop that utterance or pad it with real audio"
            )
    return input_values, attention_mask


# ---------------------------------------------------------------------------- modules
class AdapterLayer(nn.Module):
    """Strided Conv1d to twice the width, then a gated linear unit back to the width."""

    def __init__(self, config: Data2VecAudioConfig) -> None:
        super().__init__()
        width = config.output_hidden_size
        self.conv = nn.Conv1d(width, 2 * width, config.adapter_kernel_size, stride=config.adapter_stride, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.glu(self.conv(x), dim=1)  # (batch, width, frames')


class Adapter(nn.Module):
    """Optional down-projection to ``output_hidden_size``, then ``num_adapter_layers`` strided
    conv layers (each skipped with probability ``layerdrop`` in training)."""

    def __init__(self, config: Data2VecAudioConfig) -> None:
        super().__init__()
        if config.output_hidden_size != config.hidden_size:
            self.projection = nn.Linear(config.hidden_size, config.output_hidden_size)
            self.projection_norm = nn.LayerNorm(config.output_hidden_size)
        else:
            self.projection = self.projection_norm = None
        self.layers = nn.ModuleList(AdapterLayer(config) for _ in range(config.num_adapter_layers))
        self.layerdrop = config.layerdrop

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if self.projection is not None:
            hidden_states = self.projection_norm(self.projection(hidden_states))
        x = hidden_states.transpose(1, 2)  # (batch, width, frames)
        for layer in self.layers:
            if not self.training or float(torch.rand(())) >= self.layerdrop:
                x = layer(x)
        return x.transpose(1, 2)


def _init_audio_weights(config: Data2VecAudioConfig, module: nn.Module) -> None:
    # nn.Module.apply visits children before parents, so the parent rules below win
    if init_standard(module, config.initializer_range):
        return
    if isinstance(module, nn.Conv1d):
        nn.init.kaiming_normal_(module.weight)
        if module.bias is not None:
            bound = math.sqrt(module.groups / (module.in_channels * module.kernel_size[0]))
            nn.init.uniform_(module.bias, -bound, bound)
    elif isinstance(module, FeatureProjection):
        bound = math.sqrt(1 / module.linear.in_features)
        nn.init.uniform_(module.linear.weight, -bound, bound)
        nn.init.uniform_(module.linear.bias, -bound, bound)
    elif isinstance(module, PositionalConvLayer):
        nn.init.zeros_(module.conv.bias)
    elif isinstance(module, Data2VecAudioModel) and module.masked_spec_embed is not None:
        nn.init.uniform_(module.masked_spec_embed)


AUDIO = ModelFamily(Data2VecAudioConfig, "data2vec_audio", checkpoint_keys.BACKBONE_KEYS, _init_audio_weights)


class Data2VecAudioModel(Backbone):
    family = AUDIO

    def __init__(self, config: Data2VecAudioConfig) -> None:
        super().__init__(config)
        self.feature_encoder = ConvFeatureEncoder(config)
        self.feature_projection = FeatureProjection(config)
        if config.mask_time_prob > 0.0 or config.mask_feature_prob > 0.0:
            self.masked_spec_embed = nn.Parameter(torch.empty(config.hidden_size).uniform_())
        else:
            self.masked_spec_embed = None
        self.positional_conv = PositionalConvStack(config)
        self.encoder_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)
        block = block_arguments(config, config.hidden_dropout, config.attention_dropout)
        blocks = (PostNormBlock(**block, activation_dropout=config.activation_dropout) for _ in range(config.num_hidden_layers))
        self.encoder = Encoder(blocks, layerdrop=config.layerdrop)
        self.adapter = Adapter(config) if config.add_adapter else None
        self.post_init()

    # ------------------------------------------------------------ SpecAugment
    def _apply_spec_augment(
        self,
        hidden_states: torch.Tensor,
        mask_time_indices: torch.Tensor | None,
        frame_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """Replace masked time steps by ``masked_spec_embed`` (given ``mask_time_indices`` in any mode,
        sampled ones in training) and zero masked channels (training only)."""
        config = self.config
        if not config.apply_spec_augment:
            return hidden_states
        batch, frames, width = hidden_states.shape
        if mask_time_indices is None and self.training and config.mask_time_prob > 0:
            mask_time_indices = compute_span_mask(
                (batch, frames),
                config.mask_time_prob,
                config.mask_time_length,
                min_masks=config.mask_time_min_masks,
                attention_mask=frame_mask,
                device=hidden_states.device,
            )
        if mask_time_indices is not None:
            if self.masked_spec_embed is None:
                raise ValueError(
                    "mask_time_indices was given but this model has no masked_spec_embed (it is only built when "
                    "mask_time_prob > 0 or mask_feature_prob > 0): load the model with mask_time_prob > 0"
                )
            if tuple(mask_time_indices.shape) != (batch, frames):
                raise ValueError(
                    f"mask_time_indices has shape {tuple(mask_time_indices.shape)} but the audio gives "
                    f"{frames} frames: expected ({batch}, {frames})"
                )
            embed = self.masked_spec_embed.to(hidden_states.dtype)
            hidden_states = torch.where(mask_time_indices.to(hidden_states.device).bool()[..., None], embed, hidden_states)
        if self.training and config.mask_feature_prob > 0:
            channel_mask = compute_span_mask(
                (batch, width),
                config.mask_feature_prob,
                config.mask_feature_length,
                min_masks=config.mask_feature_min_masks,
                device=hidden_states.device,
            )
            hidden_states = hidden_states.masked_fill(channel_mask[:, None, :], 0.0)
        return hidden_states

    def freeze_feature_encoder(self) -> None:
        """Stop gradients into the conv feature encoder (usual when fine-tuning)."""
        self.feature_encoder.freeze()

    # ------------------------------------------------------------ forward
    def embed(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        mask_time_indices: torch.Tensor | None = None,
        drop_padding: bool = False,
    ) -> Embedded:
        """Check the waveforms; conv features -> projection -> SpecAugment -> positional conv ->
        LayerNorm, and the padding bias over frames. ``extras``: extract_features, frame_mask.
        ``drop_padding`` (with a mask): each utterance is embedded on its own samples, and the
        encoder is to run on the real frames only."""
        input_values, attention_mask = check_audio_inputs(
            self.config, input_values, attention_mask, check_values=self.should_validate(input_values)
        )
        input_values = input_values.to(self.feature_projection.linear.weight.dtype)  # e.g. a half-precision model
        if drop_padding and attention_mask is not None:
            return self._embed_each_utterance(input_values, attention_mask, mask_time_indices)
        frames = feature_encoder_output_length(input_values.shape[1], self.config)
        frame_mask = None
        if attention_mask is not None:
            frame_mask = frame_attention_mask(attention_mask, frames, self.config)  # (batch, frames)
        hidden_states, extract_features = self._embed_frames(input_values, frame_mask, mask_time_indices)
        attention_bias = attention_bias_from_masks(
            frame_mask, query_length=frames, key_length=frames, dtype=hidden_states.dtype, device=hidden_states.device
        )
        return Embedded(hidden_states, attention_bias, {"extract_features": extract_features, "frame_mask": frame_mask})

    def _embed_frames(
        self, input_values: torch.Tensor, frame_mask: torch.Tensor | None, mask_time_indices: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden states (batch, frames, hidden), extract_features (batch, frames, channels))."""
        hidden_states, extract_features = self.local_features(input_values)
        return self.contextualize_frames(hidden_states, frame_mask, mask_time_indices), extract_features

    def local_features(self, input_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Waveforms (batch, samples) -> conv features -> projection: (hidden (batch, frames, hidden),
        extract_features (batch, frames, channels)). The first half of ``embed`` (fairseq's
        ``local_features``); data2vec 2.0 pretraining runs it once per sample for all its masks."""
        features = self.feature_encoder(input_values)  # (batch, frames, channels)
        return self.feature_projection(features)  # (batch, frames, hidden) and (batch, frames, channels)

    def contextualize_frames(
        self,
        hidden_states: torch.Tensor,
        frame_mask: torch.Tensor | None = None,
        mask_time_indices: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The second half of ``embed``: masked frames (``mask_time_indices``, or SpecAugment's in
        training) -> the mask embedding, padding (``frame_mask`` False) -> zeros, + positional conv,
        LayerNorm, dropout. (batch, frames, hidden) -> (batch, frames, hidden)."""
        hidden_states = self._apply_spec_augment(hidden_states, mask_time_indices, frame_mask)
        if frame_mask is not None:
            hidden_states = hidden_states.masked_fill(~frame_mask[..., None], 0.0)
        hidden_states = hidden_states + self.positional_conv(hidden_states)
        return self.dropout(self.encoder_norm(hidden_states))

    def _embed_each_utterance(
        self, input_values: torch.Tensor, attention_mask: torch.Tensor, mask_time_indices: torch.Tensor | None
    ) -> Embedded:
        """Each utterance through the convolutions alone, on its own samples (no work on padding, and
        no padding reaching its last frames through the positional convolutions, as it does in a
        padded batch), laid out (batch, frames, ...) with zeros after each utterance's frames."""
        samples = attention_mask.long().sum(-1)  # (batch,)
        lengths = feature_encoder_output_length(samples, self.config)  # (batch,) frames
        frames = feature_encoder_output_length(input_values.shape[1], self.config)
        hidden_states = extract_features = None
        for row, (row_samples, row_frames) in enumerate(zip(samples.tolist(), lengths.tolist())):
            row_mask = None if mask_time_indices is None else mask_time_indices[row : row + 1, :row_frames]
            utterance = input_values[row : row + 1, :row_samples]
            if utterance.device.type == "cpu":
                # zeros up to a common size, so that the CPU convolutions reuse their compiled kernels
                # (see core.encoder.common_size_padding); the convolutions have no padding, so the added
                # samples reach only frames after the utterance's own, which are cut off
                utterance = F.pad(utterance, (0, common_size_padding(row_samples)))
            states, features = self.local_features(utterance)
            states, features = states[:, :row_frames], features[:, :row_frames]
            states = self.contextualize_frames(states, None, row_mask)
            if hidden_states is None:  # (batch, frames, hidden) and (batch, frames, channels), zeros at padding
                hidden_states = states.new_zeros(len(samples), frames, states.shape[-1])
                extract_features = features.new_zeros(len(samples), frames, features.shape[-1])
            hidden_states[row, :row_frames] = states[0]
            extract_features[row, :row_frames] = features[0]
        frame_mask = torch.arange(frames, device=lengths.device)[None, :] < lengths[:, None]
        extras = {"extract_features": extract_features, "frame_mask": frame_mask}
        return Embedded(hidden_states, None, extras, real_tokens=frame_mask)

    def final_states(self, hidden_states: torch.Tensor, embedded: Embedded) -> torch.Tensor:
        return self.adapter(hidden_states) if self.adapter is not None else hidden_states

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        mask_time_indices: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        drop_padding: bool = False,
    ) -> AudioEncoderOutput:
        """input_values: (batch, samples) float waveform (or (samples,) for one utterance);
        attention_mask: same shape, 1 for audio and 0 for right padding; mask_time_indices:
        (batch, frames) bool, frames to replace by ``masked_spec_embed`` (applied in eval too).

        ``hidden_states`` holds the transformer's input and each layer's output (before the adapter).
        In training, a layer dropped by ``layerdrop`` repeats its input in ``hidden_states`` and
        gives None in ``attentions``.

        ``drop_padding`` (with an ``attention_mask``): each utterance runs on its own samples and
        frames only, packed without padding through the transformer: no work is spent on padding,
        and each utterance gets what it gets alone (a padded batch differs from that in the last
        frames of a padded row, which see padding through the positional convolutions). The padded
        frames of ``last_hidden_state``, ``extract_features`` and ``hidden_states`` are zeros.
        """
        embedded = self.embed(input_values, attention_mask, mask_time_indices, drop_padding)
        result = self.run_encoder(
            embedded, output_attentions=output_attentions, output_hidden_states=output_hidden_states
        )
        return AudioEncoderOutput(
            last_hidden_state=result.last_hidden_state,
            extract_features=embedded.extras["extract_features"],
            hidden_states=result.hidden_states,
            attentions=result.attentions,
        )
