"""Keras 3 task heads: image classification, and semantic segmentation (feature pyramid +
UperNet decode head + optional FCN auxiliary head), as in ``vision/heads.py``. Feature maps
are channels-last inside; segmentation logits come out NCHW like the PyTorch class's."""

from __future__ import annotations

import keras
from keras import ops

from ..config import Data2VecVisionConfig
from ..heads import Data2VecVisionForImageClassification, Data2VecVisionForSemanticSegmentation, check_out_indices
from . import resize
from .layers import dense, normal
from .losses import cross_entropy, is_integer, sequence_classification_loss
from .model import TFData2VecVisionModel, TFData2VecVisionPreTrainedModel
from .outputs import TFPredictionOutput


class TFData2VecVisionForImageClassification(TFData2VecVisionPreTrainedModel):
    """A linear classifier on the pooled image vector (mean of the patches + LayerNorm, or CLS)."""

    torch_class = Data2VecVisionForImageClassification

    def __init__(self, config: Data2VecVisionConfig, name: str | None = None) -> None:
        super().__init__(config, name=name)
        self.num_labels = config.num_labels
        self.backbone = TFData2VecVisionModel(config, add_pooling_layer=True, name="backbone")
        # num_labels=0: no classifier, the logits are the pooled features
        self.classifier = (
            dense(config.num_labels, config.hidden_size, "classifier", config.initializer_range)
            if config.num_labels > 0
            else None
        )
        self.built = True

    def call(self, pixel_values, labels=None, output_attentions=False, output_hidden_states=False,
             interpolate_pos_encoding=False, training=False) -> TFPredictionOutput:
        """labels: (batch,) class ids, (batch,) or (batch, num_labels) floats for regression,
        (batch, num_labels) 0/1 floats for multi-label; ``config.problem_type`` decides, or the
        labels' dtype and ``num_labels`` when it is unset."""
        outputs = self.backbone(
            pixel_values, output_attentions=output_attentions, output_hidden_states=output_hidden_states,
            interpolate_pos_encoding=interpolate_pos_encoding, training=training,
        )
        pooled = outputs.pooler_output  # (batch, hidden)
        logits = self.classifier(pooled) if self.classifier is not None else pooled  # (batch, num_labels)
        loss = sequence_classification_loss(logits, labels, self.config.problem_type) if labels is not None else None
        return TFPredictionOutput(loss, logits, outputs.hidden_states, outputs.attentions)


# ---------------------------------------------------------------------------- segmentation
def batch_norm(channels: int, name: str = "norm") -> keras.layers.BatchNormalization:
    """PyTorch's BatchNorm2d defaults: eps 1e-5, running averages updated by 0.1 of the batch's."""
    layer = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)
    layer.build((None, None, None, channels))
    return layer


def conv(out_channels: int, in_channels: int, kernel_size: int, name: str, std: float, use_bias: bool = True,
         dilation: int = 1) -> keras.layers.Conv2D:
    """A stride-1 convolution padded to keep the size (PyTorch ``padding=(kernel_size // 2) * dilation``)."""
    layer = keras.layers.Conv2D(
        out_channels, kernel_size, padding="same", dilation_rate=dilation, use_bias=use_bias,
        kernel_initializer=normal(std), name=name,
    )
    layer.build((None, None, None, in_channels))
    return layer


def deconv(channels: int, name: str, std: float) -> keras.layers.Conv2DTranspose:
    """A 2x2, stride-2 transposed convolution (doubles rows and columns)."""
    layer = keras.layers.Conv2DTranspose(channels, 2, strides=2, kernel_initializer=normal(std), name=name)
    layer.build((None, None, None, channels))
    return layer


class ConvNormReLU(keras.layers.Layer):
    """Convolution without bias -> BatchNorm -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, std: float, name: str) -> None:
        super().__init__(name=name)
        self.conv = conv(out_channels, in_channels, kernel_size, "conv", std, use_bias=False)
        self.norm = batch_norm(out_channels)
        self.built = True

    def call(self, x, training=False):
        return ops.relu(self.norm(self.conv(x), training=training))


class UpsampleBy4(keras.layers.Layer):
    """deconv (x2) -> BatchNorm -> GELU -> deconv (x2)."""

    def __init__(self, channels: int, std: float, name: str = "upsample_by_4") -> None:
        super().__init__(name=name)
        self.first_deconv = deconv(channels, "first_deconv", std)
        self.norm = batch_norm(channels)
        self.second_deconv = deconv(channels, "second_deconv", std)
        self.built = True

    def call(self, x, training=False):
        return self.second_deconv(ops.gelu(self.norm(self.first_deconv(x), training=training), approximate=False))


class FeaturePyramid(keras.layers.Layer):
    """Four single-scale maps (batch, rows, cols, hidden) to 4x, 2x, 1x and 1/2x the patch grid."""

    def __init__(self, channels: int, std: float, name: str = "feature_pyramid") -> None:
        super().__init__(name=name)
        self.upsample_by_4 = UpsampleBy4(channels, std)
        self.upsample_by_2 = deconv(channels, "upsample_by_2", std)
        self.downsample_by_2 = keras.layers.MaxPooling2D(pool_size=2, strides=2, name="downsample_by_2")
        self.built = True

    def call(self, features, training=False):
        finest, fine, same, coarse = features
        return [self.upsample_by_4(finest, training=training), self.upsample_by_2(fine), same,
                self.downsample_by_2(coarse)]


def _spatial(x) -> tuple[int, int]:
    return (x.shape[1], x.shape[2])


class UperNetHead(keras.layers.Layer):
    """Pyramid pooling on the coarsest map, a top-down path adding each coarser level to the
    next finer one, every level resized to the finest and fused, then a 1x1 classifier."""

    def __init__(self, config: Data2VecVisionConfig, num_levels: int = 4, name: str = "decode_head") -> None:
        super().__init__(name=name)
        channels, std = config.hidden_size, config.initializer_range
        self.pool_scales = tuple(config.pool_scales)
        self.pyramid_pooling = [
            ConvNormReLU(channels, channels, 1, std, f"pyramid_pooling.{i}") for i in range(len(self.pool_scales))
        ]
        self.pyramid_bottleneck = ConvNormReLU(channels * (1 + len(self.pool_scales)), channels, 3, std, "pyramid_bottleneck")
        self.lateral_convs = [ConvNormReLU(channels, channels, 1, std, f"lateral_convs.{i}") for i in range(num_levels - 1)]
        self.output_convs = [ConvNormReLU(channels, channels, 3, std, f"output_convs.{i}") for i in range(num_levels - 1)]
        self.fuse_bottleneck = ConvNormReLU(channels * num_levels, channels, 3, std, "fuse_bottleneck")
        self.classifier = conv(config.num_labels, channels, 1, "classifier", std)
        self.built = True

    def pyramid_pooled(self, x, training=False):
        size = _spatial(x)
        pooled = [
            resize.resize(unit(resize.adaptive_average_pool(x, scale), training=training), size)
            for scale, unit in zip(self.pool_scales, self.pyramid_pooling)
        ]
        return self.pyramid_bottleneck(ops.concatenate([x, *pooled], axis=-1), training=training)

    def call(self, features, training=False):
        """features: finest first. Returns (batch, 4 * rows, 4 * cols, num_labels)."""
        levels = [unit(feature, training=training) for unit, feature in zip(self.lateral_convs, features)]
        levels.append(self.pyramid_pooled(features[-1], training=training))
        for index in range(len(levels) - 1, 0, -1):  # top-down: coarse into fine
            levels[index - 1] = levels[index - 1] + resize.resize(levels[index], _spatial(levels[index - 1]))
        outputs = [unit(level, training=training) for unit, level in zip(self.output_convs, levels)] + [levels[-1]]
        finest = _spatial(outputs[0])
        fused = ops.concatenate([outputs[0]] + [resize.resize(out, finest) for out in outputs[1:]], axis=-1)
        return self.classifier(self.fuse_bottleneck(fused, training=training))


class FCNHead(keras.layers.Layer):
    """Auxiliary head: ``auxiliary_num_convs`` 3x3 conv units on one pyramid level, optionally
    concatenated with their input and fused, then a 1x1 classifier."""

    def __init__(self, config: Data2VecVisionConfig, level: int = 2, name: str = "auxiliary_head") -> None:
        super().__init__(name=name)
        self.level = level
        channels, std = config.auxiliary_channels, config.initializer_range
        if config.auxiliary_num_convs == 0 and channels != config.hidden_size:
            raise ValueError(
                f"auxiliary_num_convs=0 passes the features straight to the classifier, so auxiliary_channels "
                f"({channels}) must equal hidden_size ({config.hidden_size}); set one of them accordingly"
            )
        self.convs = [
            ConvNormReLU(config.hidden_size if index == 0 else channels, channels, 3, std, f"convs.{index}")
            for index in range(config.auxiliary_num_convs)
        ]
        self.concat_conv = (
            ConvNormReLU(config.hidden_size + channels, channels, 3, std, "concat_conv")
            if config.auxiliary_concat_input
            else None
        )
        self.classifier = conv(config.num_labels, channels, 1, "classifier", std)
        self.built = True

    def call(self, features, training=False):
        x = features[self.level]
        out = x
        for unit in self.convs:
            out = unit(out, training=training)
        if self.concat_conv is not None:
            out = self.concat_conv(ops.concatenate([x, out], axis=-1), training=training)
        return self.classifier(out)


class TFData2VecVisionForSemanticSegmentation(TFData2VecVisionPreTrainedModel):
    """Per-pixel classes. Logits (batch, num_labels, 4 * rows, 4 * cols) come at 4x the patch grid;
    the loss upsamples them bilinearly to the label map's size."""

    torch_class = Data2VecVisionForSemanticSegmentation

    def __init__(self, config: Data2VecVisionConfig, name: str | None = None) -> None:
        check_out_indices(config)
        super().__init__(config, name=name)
        self.num_labels = config.num_labels
        self.backbone = TFData2VecVisionModel(config, add_pooling_layer=False, name="backbone")
        self.feature_pyramid = FeaturePyramid(config.hidden_size, config.initializer_range)
        self.decode_head = UperNetHead(config)
        self.auxiliary_head = FCNHead(config) if config.use_auxiliary_head else None
        self.built = True

    def compute_segmentation_loss(self, logits, auxiliary_logits, labels):
        """Cross entropy on channels-last logits upsampled to the labels' size; pixels labelled
        ``semantic_loss_ignore_index`` are not scored; the auxiliary loss is added with
        ``auxiliary_loss_weight``."""
        size = (labels.shape[1], labels.shape[2])
        ignore = self.config.semantic_loss_ignore_index
        flat_labels = ops.reshape(labels, (-1,))

        def pixel_loss(scores):  # (batch, rows, cols, labels)
            upsampled = resize.resize(scores, size)
            return cross_entropy(ops.reshape(upsampled, (-1, self.num_labels)), flat_labels, ignore_index=ignore)

        loss = pixel_loss(logits)
        if auxiliary_logits is not None:
            loss = loss + self.config.auxiliary_loss_weight * pixel_loss(auxiliary_logits)
        return loss

    def _check_labels(self, labels, pixel_values):
        if self.config.num_labels < 2:
            raise ValueError(
                f"semantic segmentation with labels needs num_labels >= 2, the model has {self.config.num_labels}"
            )
        labels = ops.convert_to_tensor(labels)
        images = tuple(ops.convert_to_tensor(pixel_values).shape)
        expected = (images[0], *images[2:])
        shape = tuple(labels.shape)
        if len(shape) != 3 or shape[1:] != expected[1:] or (None not in (shape[0], expected[0]) and shape[0] != expected[0]):
            raise ValueError(
                f"labels have shape {shape} but the images are {images}: expected a (batch, height, width) = "
                f"{expected} map of class ids (resize the label maps with the images, nearest-neighbour)"
            )
        if not is_integer(labels):
            raise ValueError(f"labels must be integer class ids, got {keras.backend.standardize_dtype(labels.dtype)}")
        return labels

    def call(self, pixel_values, labels=None, output_attentions=False, output_hidden_states=False,
             interpolate_pos_encoding=False, training=False) -> TFPredictionOutput:
        """labels: (batch, height, width) class ids of every pixel of the input images."""
        if labels is not None:
            labels = self._check_labels(labels, pixel_values)
        embedded, bias, (rows, cols) = self.backbone.embed(pixel_values, None, interpolate_pos_encoding, training)
        # out_indices k names hidden_states[k - 1]: the embedding output for k = 1, else block k - 1's output
        _, selected, all_hidden, attentions = self.backbone.encoder(
            embedded, attention_bias=bias, indices=[k - 1 for k in sorted(self.config.out_indices)],
            output_hidden_states=output_hidden_states, output_attentions=output_attentions, training=training,
        )
        hidden = self.config.hidden_size
        feature_maps = [ops.reshape(state[:, 1:], (-1, rows, cols, hidden)) for state in selected]  # CLS dropped
        pyramid = self.feature_pyramid(feature_maps, training=training)
        logits = self.decode_head(pyramid, training=training)  # (batch, 4 * rows, 4 * cols, num_labels)
        auxiliary_logits = self.auxiliary_head(pyramid, training=training) if self.auxiliary_head is not None else None
        loss = self.compute_segmentation_loss(logits, auxiliary_logits, labels) if labels is not None else None
        return TFPredictionOutput(
            loss,
            ops.transpose(logits, (0, 3, 1, 2)),  # (batch, num_labels, 4 * rows, 4 * cols)
            all_hidden,
            attentions,
        )
