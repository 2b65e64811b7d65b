"""Task heads of data2vec vision: image classification, and semantic segmentation with a
UperNet decode head (and an optional FCN auxiliary head) on a feature pyramid built from
four of the encoder's layers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.losses import sequence_classification_loss
from ..core.modeling import HeadModel
from ..core.outputs import PredictionOutput
from . import checkpoint_keys
from .config import Data2VecVisionConfig
from .model import Data2VecVisionModel


class Data2VecVisionForImageClassification(HeadModel):
    """A linear classifier on the pooled image vector (mean of the patches + LayerNorm, or CLS)."""

    backbone_class = Data2VecVisionModel
    head_keys = checkpoint_keys.IMAGE_CLASSIFICATION_KEYS

    def __init__(self, config: Data2VecVisionConfig) -> None:
        super().__init__(config, add_pooling_layer=True)
        self.num_labels = config.num_labels
        # num_labels=0: no classifier, the logits are the pooled features
        self.classifier = nn.Linear(config.hidden_size, config.num_labels) if config.num_labels > 0 else nn.Identity()
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        interpolate_pos_encoding: bool = False,
    ) -> PredictionOutput:
        """labels: (batch,) class ids, (batch,) or (batch, num_labels) floats for regression,
        (batch, num_labels) 0/1 floats for multi-label; ``config.problem_type`` decides, or the
        labels' dtype and ``num_labels`` when it is unset."""
        outputs = self.run_backbone(locals())
        logits = self.classifier(outputs.pooler_output)  # (batch, num_labels)
        loss = None
        if labels is not None:
            loss = sequence_classification_loss(logits, labels, self.config.problem_type)
        return PredictionOutput(loss, logits, outputs.hidden_states, outputs.attentions)


# ---------------------------------------------------------------------------- segmentation
class ConvNormReLU(nn.Module):
    """Convolution without bias -> BatchNorm -> ReLU."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 1, padding: int = 0, dilation: int = 1
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False)
        self.norm = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


class UpsampleBy4(nn.Module):
    """deconv (x2) -> BatchNorm -> GELU -> deconv (x2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.first_deconv = nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2)
        self.norm = nn.BatchNorm2d(channels)
        self.second_deconv = nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second_deconv(F.gelu(self.norm(self.first_deconv(x))))


class FeaturePyramid(nn.Module):
    """Four single-scale ViT feature maps (batch, hidden, rows, cols) to strides 4x, 2x, 1x and
    1/2x of the patch grid: two deconvolutions, one, none, and a 2x2 max pool."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.upsample_by_4 = UpsampleBy4(channels)
        self.upsample_by_2 = nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2)
        self.downsample_by_2 = nn.MaxPool2d(kernel_size=2, stride=2)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        finest, fine, same, coarse = features
        return [self.upsample_by_4(finest), self.upsample_by_2(fine), same, self.downsample_by_2(coarse)]


def _resize(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class UperNetHead(nn.Module):
    """UperNet (Xiao et al., 2018): pyramid pooling on the coarsest map, a top-down path adding
    each coarser level to the next finer one, every level resized to the finest and fused."""

    def __init__(self, config: Data2VecVisionConfig, num_levels: int = 4) -> None:
        super().__init__()
        channels = config.hidden_size
        self.pool_scales = tuple(config.pool_scales)
        self.pyramid_pooling = nn.ModuleList(ConvNormReLU(channels, channels) for _ in self.pool_scales)
        self.pyramid_bottleneck = ConvNormReLU(channels * (1 + len(self.pool_scales)), channels, 3, padding=1)
        self.lateral_convs = nn.ModuleList(ConvNormReLU(channels, channels) for _ in range(num_levels - 1))
        self.output_convs = nn.ModuleList(ConvNormReLU(channels, channels, 3, padding=1) for _ in range(num_levels - 1))
        self.fuse_bottleneck = ConvNormReLU(channels * num_levels, channels, 3, padding=1)
        self.classifier = nn.Conv2d(channels, config.num_labels, kernel_size=1)

    def pyramid_pooled(self, x: torch.Tensor) -> torch.Tensor:
        """x: the coarsest map; average-pooled to scale x scale per pool scale, convolved,
        resized back and concatenated with x, then fused by a 3x3 conv unit."""
        size = x.shape[2:]
        pooled = [
            _resize(conv(F.adaptive_avg_pool2d(x, scale)), size)
            for scale, conv in zip(self.pool_scales, self.pyramid_pooling)
        ]
        return self.pyramid_bottleneck(torch.cat([x, *pooled], dim=1))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """features: finest first. Returns (batch, num_labels, rows, cols) at the finest level."""
        levels = [conv(feature) for conv, feature in zip(self.lateral_convs, features)]
        levels.append(self.pyramid_pooled(features[-1]))
        for index in range(len(levels) - 1, 0, -1):  # top-down: coarse into fine
            levels[index - 1] = levels[index - 1] + _resize(levels[index], levels[index - 1].shape[2:])
        outputs = [conv(level) for conv, level in zip(self.output_convs, levels)] + [levels[-1]]
        del levels  # the lateral maps are not kept alive through the fusion (the peak of memory)
        finest = outputs[0].shape[2:]
        fused = torch.cat([outputs[0]] + [_resize(out, finest) for out in outputs[1:]], dim=1)
        return self.classifier(self.fuse_bottleneck(fused))


class FCNHead(nn.Module):
    """Auxiliary head: ``auxiliary_num_convs`` 3x3 conv units on one pyramid level, optionally
    concatenated with their input and fused, then a 1x1 classifier."""

    def __init__(self, config: Data2VecVisionConfig, level: int = 2, kernel_size: int = 3, dilation: int = 1) -> None:
        super().__init__()
        self.level = level
        channels = config.auxiliary_channels
        if config.auxiliary_num_convs == 0 and channels != config.hidden_size:
            raise ValueError(
                f"auxiliary_num_convs=0 passes the features straight to the classifier, so auxiliary_channels "
                f"({channels}) must equal hidden_size ({config.hidden_size}); set one of them accordingly"
            )
        padding = (kernel_size // 2) * dilation
        self.convs = nn.ModuleList(
            ConvNormReLU(config.hidden_size if index == 0 else channels, channels, kernel_size, padding, dilation)
            for index in range(config.auxiliary_num_convs)
        )
        self.concat_conv = (
            ConvNormReLU(config.hidden_size + channels, channels, kernel_size, padding=kernel_size // 2)
            if config.auxiliary_concat_input
            else None
        )
        self.classifier = nn.Conv2d(channels, config.num_labels, kernel_size=1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = features[self.level]
        out = x
        for conv in self.convs:
            out = conv(out)
        if self.concat_conv is not None:
            out = self.concat_conv(torch.cat([x, out], dim=1))
        return self.classifier(out)


def check_out_indices(config: Data2VecVisionConfig) -> None:
    """Refuse ``out_indices`` that do not name four encoder outputs for the feature pyramid."""
    indices = list(config.out_indices)
    last = config.num_hidden_layers + 1
    if len(indices) != 4 or len(set(indices)) != 4 or not all(1 <= k <= last for k in indices):
        raise ValueError(
            f"semantic segmentation needs out_indices to be 4 different integers in 1..{last} "
            f"(num_hidden_layers + 1) naming the encoder outputs hidden_states[k - 1] of the feature "
            f"pyramid, got {config.out_indices}; e.g. [3, 5, 7, 11] for a 12-layer model"
        )


class Data2VecVisionForSemanticSegmentation(HeadModel):
    """Per-pixel classes. Logits come at 4x the patch grid (1/4 of the image for 16-pixel patches);
    the loss upsamples them bilinearly to the label map's size."""

    backbone_class = Data2VecVisionModel
    head_keys = checkpoint_keys.SEMANTIC_SEGMENTATION_KEYS

    def __init__(self, config: Data2VecVisionConfig) -> None:
        check_out_indices(config)
        super().__init__(config, add_pooling_layer=False)
        self.num_labels = config.num_labels
        self.feature_pyramid = FeaturePyramid(config.hidden_size)
        self.decode_head = UperNetHead(config)
        self.auxiliary_head = FCNHead(config) if config.use_auxiliary_head else None
        self.post_init()

    def compute_loss(
        self, logits: torch.Tensor, auxiliary_logits: torch.Tensor | None, labels: torch.Tensor
    ) -> torch.Tensor:
        """Cross entropy on logits upsampled to the labels' size; ``semantic_loss_ignore_index``
        pixels are not scored; the auxiliary loss is added with ``auxiliary_loss_weight``."""
        size = labels.shape[-2:]
        ignore = self.config.semantic_loss_ignore_index
        loss = F.cross_entropy(_resize(logits, size), labels, ignore_index=ignore)
        if auxiliary_logits is not None:
            loss = loss + self.config.auxiliary_loss_weight * F.cross_entropy(
                _resize(auxiliary_logits, size), labels, ignore_index=ignore
            )
        return loss

    def _check_labels(self, labels: torch.Tensor, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.config.num_labels < 2:
            raise ValueError(
                f"semantic segmentation with labels needs num_labels >= 2, the model has {self.config.num_labels}"
            )
        batch = pixel_values.shape[0]
        if labels.dim() != 3 or labels.shape[0] != batch:
            raise ValueError(
                f"labels have shape {tuple(labels.shape)} but the images are {tuple(pixel_values.shape)}: "
                f"expected a (batch, height, width) map of class ids per image, batch = {batch} (the map may "
                "have its own resolution: the logits are upsampled to it)"
            )
        if labels.is_floating_point():
            raise ValueError(f"labels must be integer class ids, got {labels.dtype}")
        return labels.to(device=pixel_values.device, dtype=torch.long)

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        interpolate_pos_encoding: bool = False,
    ) -> PredictionOutput:
        """labels: (batch, height, width) class ids of every pixel of the input images."""
        if labels is not None:
            labels = self._check_labels(labels, pixel_values)
        embedded = self.backbone.embed(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding)
        # out_indices k names hidden_states[k - 1]: the embedding output for k = 1, else block k - 1's output
        outputs = self.backbone.encoder(
            embedded.hidden_states,
            embedded.attention_bias,
            indices=[k - 1 for k in sorted(self.config.out_indices)],
            stop_early=not (output_hidden_states or output_attentions),
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
        )
        rows, cols = embedded.extras["grid"]
        feature_maps = [
            state[:, 1:].transpose(1, 2).reshape(state.shape[0], -1, rows, cols) for state in outputs.intermediates
        ]  # 4 x (batch, hidden, rows, cols), CLS dropped
        hidden_states, attentions = outputs.hidden_states, outputs.attentions
        del embedded, outputs  # the encoder's outputs are not kept alive through the heads (the peak of memory)
        pyramid = self.feature_pyramid(feature_maps)
        del feature_maps
        logits = self.decode_head(pyramid)  # (batch, num_labels, 4 * rows, 4 * cols)
        auxiliary_logits = self.auxiliary_head(pyramid) if self.auxiliary_head is not None else None
        loss = self.compute_loss(logits, auxiliary_logits, labels) if labels is not None else None
        return PredictionOutput(loss, logits, hidden_states, attentions)
