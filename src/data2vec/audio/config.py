"""Configuration of the speech family (``model_type`` ``data2vec-audio``): a wav2vec 2.0-style
convolutional feature encoder, a stack of positional convolutions and a post-norm transformer."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

from ..core.config import TransformerConfig

_CTC_REDUCTIONS = ("sum", "mean", "none")


@dataclasses.dataclass(kw_only=True)
class Data2VecAudioConfig(TransformerConfig):
    """Keys and defaults of the reference's ``Data2VecAudioConfig`` (those of
    ``facebook/data2vec-audio-base-960h``).

    Derived values: ``num_feat_extract_layers`` is ``len(conv_dim)`` (written to ``config.json``
    like the reference does; the constructor checks a given value, ``from_dict`` recomputes it);
    ``output_hidden_size`` defaults to ``hidden_size``; ``inputs_to_logits_ratio`` is the product
    of the conv strides, the number of waveform samples per output frame. ``apply_spec_augment``
    is not a key of the reference's class but its model reads it (default True), so it is
    declared here and written only when false.
    """

    model_type = "data2vec-audio"
    derived_keys: ClassVar[dict[str, str]] = {"num_feat_extract_layers": "len(conv_dim)"}

    vocab_size: int | None = 32
    hidden_dropout: float = 0.1
    activation_dropout: float = 0.1
    attention_dropout: float = 0.1
    feat_proj_dropout: float = 0.0
    final_dropout: float = 0.1
    layerdrop: float = 0.1
    layer_norm_eps: float = 1e-5
    feat_extract_activation: str = "gelu"
    conv_dim: list[int] = dataclasses.field(default_factory=lambda: [512] * 7)
    conv_stride: list[int] = dataclasses.field(default_factory=lambda: [5, 2, 2, 2, 2, 2, 2])
    conv_kernel: list[int] = dataclasses.field(default_factory=lambda: [10, 3, 3, 3, 3, 2, 2])
    conv_bias: bool = False
    num_conv_pos_embedding_groups: int = 16
    conv_pos_kernel_size: int = 19
    num_conv_pos_embeddings: int = 5  # the number of positional conv layers (not a kernel size)
    apply_spec_augment: bool = True
    mask_time_prob: float = 0.05
    mask_time_length: int = 10
    mask_time_min_masks: int = 2
    mask_feature_prob: float = 0.0
    mask_feature_length: int = 10
    mask_feature_min_masks: int = 0
    ctc_loss_reduction: str = "sum"
    ctc_zero_infinity: bool = False
    use_weighted_layer_sum: bool = False
    classifier_proj_size: int = 256
    tdnn_dim: list[int] = dataclasses.field(default_factory=lambda: [512, 512, 512, 512, 1500])
    tdnn_kernel: list[int] = dataclasses.field(default_factory=lambda: [5, 3, 3, 1, 1])
    tdnn_dilation: list[int] = dataclasses.field(default_factory=lambda: [1, 2, 3, 1, 1])
    xvector_output_dim: int = 512
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    add_adapter: bool = False
    adapter_kernel_size: int = 3
    adapter_stride: int = 2
    num_adapter_layers: int = 3
    output_hidden_size: int | None = None

    def __post_init__(self, num_labels: int | None) -> None:
        for name in ("conv_dim", "conv_stride", "conv_kernel", "tdnn_dim", "tdnn_kernel", "tdnn_dilation"):
            setattr(self, name, [int(value) for value in getattr(self, name)])
        if self.output_hidden_size is None:
            self.output_hidden_size = self.hidden_size
        super().__post_init__(num_labels)

    @property
    def num_feat_extract_layers(self) -> int:
        return len(self.conv_dim)

    @property
    def inputs_to_logits_ratio(self) -> int:
        """Waveform samples per frame of the feature encoder (320 for the official checkpoints)."""
        return math.prod(self.conv_stride)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["num_feat_extract_layers"] = self.num_feat_extract_layers
        if out["apply_spec_augment"] is True:  # the reference reads a missing key as true and writes none
            del out["apply_spec_augment"]
        return dict(sorted(out.items()))

    def validate(self) -> None:
        layers = {name: len(getattr(self, name)) for name in ("conv_dim", "conv_stride", "conv_kernel")}
        if len(set(layers.values())) != 1:
            raise ValueError(
                "conv_dim, conv_stride and conv_kernel must have one entry per feature-encoder layer, got lengths "
                + ", ".join(f"{name}={length}" for name, length in layers.items())
            )
        if not self.conv_dim:
            raise ValueError("conv_dim is empty: the feature encoder needs at least one conv layer")
        tdnn = {name: len(getattr(self, name)) for name in ("tdnn_dim", "tdnn_kernel", "tdnn_dilation")}
        if len(set(tdnn.values())) != 1 or not self.tdnn_dim:
            raise ValueError(
                "tdnn_dim, tdnn_kernel and tdnn_dilation must have one entry per TDNN layer (at least one), got "
                + ", ".join(f"{name}={length}" for name, length in tdnn.items())
            )
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads ({self.num_attention_heads})"
            )
        if self.hidden_size % self.num_conv_pos_embedding_groups != 0:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_conv_pos_embedding_groups "
                f"({self.num_conv_pos_embedding_groups})"
            )
        if self.ctc_loss_reduction not in _CTC_REDUCTIONS:
            raise ValueError(f"ctc_loss_reduction must be one of {_CTC_REDUCTIONS}, got {self.ctc_loss_reduction!r}")
        for name in ("mask_time_prob", "mask_feature_prob", "layerdrop"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        for name in ("mask_time_length", "mask_feature_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
