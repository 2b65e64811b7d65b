"""The vision family's parameter names: reference (BEiT layout) <-> ours."""

from ..core.checkpoint import KeyMap

_LAYER = "encoder.layer.{i}."
_SELF = _LAYER + "attention.attention."
_TABLE = "relative_position_bias.relative_position_bias_table"

BACKBONE_KEYS = KeyMap(
    renames=[
        ("embeddings.cls_token", "embeddings.cls_token"),
        ("embeddings.mask_token", "embeddings.mask_token"),
        ("embeddings.position_embeddings", "embeddings.position_embeddings"),
        ("embeddings.patch_embeddings.projection.{p}", "embeddings.patch_embedding.{p}"),
        ("encoder." + _TABLE, "shared_relative_position_bias.table"),
        (_SELF + _TABLE, "layer_relative_position_biases.{i}.table"),
        # BEiT: the key projection has no bias
        (_SELF + "query.bias", "layers.{i}.attention.query_bias"),
        (_SELF + "value.bias", "layers.{i}.attention.value_bias"),
        (_LAYER + "attention.output.dense.{p}", "layers.{i}.attention.out_proj.{p}"),
        (_LAYER + "layernorm_before.{p}", "layers.{i}.attention_norm.{p}"),
        (_LAYER + "layernorm_after.{p}", "layers.{i}.mlp_norm.{p}"),
        (_LAYER + "intermediate.dense.{p}", "layers.{i}.mlp.fc1.{p}"),
        (_LAYER + "output.dense.{p}", "layers.{i}.mlp.fc2.{p}"),
        (_LAYER + "lambda_1", "layers.{i}.attention_scale"),
        (_LAYER + "lambda_2", "layers.{i}.mlp_scale"),
        ("layernorm.{p}", "norm.{p}"),  # final LayerNorm, with CLS pooling only
        ("pooler.layernorm.{p}", "pooler.norm.{p}"),  # LayerNorm after mean pooling
    ],
    fused=[
        (tuple(_SELF + f"{name}.weight" for name in ("query", "key", "value")), "layers.{i}.attention.qkv.weight"),
    ],
    # a buffer (computed, not learned) that older checkpoints stored
    ignored=[r"(encoder\.|encoder\.layer\.\d+\.attention\.attention\.)relative_position_bias\.relative_position_index"],
)

IMAGE_CLASSIFICATION_KEYS = KeyMap(renames=[("classifier.{p}", "classifier.{p}")])


def _conv_norm(reference: str, ours: str) -> list[tuple[str, str]]:
    """A convolution (no bias) + BatchNorm + ReLU unit."""
    return [(reference + ".convolution.{p}", ours + ".conv.{p}"), (reference + ".normalization.{p}", ours + ".norm.{p}")]


SEMANTIC_SEGMENTATION_KEYS = KeyMap(
    renames=[
        # feature pyramid from single-scale ViT features
        ("fpn1.0.{p}", "feature_pyramid.upsample_by_4.first_deconv.{p}"),
        ("fpn1.1.{p}", "feature_pyramid.upsample_by_4.norm.{p}"),
        ("fpn1.3.{p}", "feature_pyramid.upsample_by_4.second_deconv.{p}"),
        ("fpn2.0.{p}", "feature_pyramid.upsample_by_2.{p}"),
        # UperNet decode head
        *_conv_norm("decode_head.psp_modules.blocks.{i}.conv", "decode_head.pyramid_pooling.{i}"),
        *_conv_norm("decode_head.psp_bottleneck", "decode_head.pyramid_bottleneck"),
        *_conv_norm("decode_head.lateral_convs.{i}", "decode_head.lateral_convs.{i}"),
        *_conv_norm("decode_head.fpn_convs.{i}", "decode_head.output_convs.{i}"),
        *_conv_norm("decode_head.fpn_bottleneck", "decode_head.fuse_bottleneck"),
        ("decode_head.classifier.{p}", "decode_head.classifier.{p}"),
        # auxiliary FCN head
        *_conv_norm("auxiliary_head.convs.{i}", "auxiliary_head.convs.{i}"),
        *_conv_norm("auxiliary_head.conv_cat", "auxiliary_head.concat_conv"),
        ("auxiliary_head.classifier.{p}", "auxiliary_head.classifier.{p}"),
    ]
)
