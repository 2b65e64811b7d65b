"""The vision family's parameter names: reference (BEiT layout) <-> ours."""

from ..core.checkpoint import KeyMap, block_fused, block_renames, renames_under, unchanged

_LAYER = "encoder.layer.{i}."
_TABLE = "relative_position_bias.relative_position_bias_table"

BACKBONE_KEYS = KeyMap(
    renames=[
        *unchanged("embeddings.cls_token", "embeddings.mask_token", "embeddings.position_embeddings"),
        ("embeddings.patch_embeddings.projection.{p}", "embeddings.patch_embedding.{p}"),
        ("encoder." + _TABLE, "shared_relative_position_bias.table"),
        (_LAYER + "attention.attention." + _TABLE, "layer_relative_position_biases.{i}.table"),
        *block_renames(
            _LAYER,
            {
                # BEiT: the key projection has no bias
                "attention.attention.query.bias": "attention.query_bias",
                "attention.attention.value.bias": "attention.value_bias",
                "attention.output.dense.{p}": "attention.out_proj.{p}",
                "layernorm_before.{p}": "attention_norm.{p}",
                "layernorm_after.{p}": "mlp_norm.{p}",
                "intermediate.dense.{p}": "mlp.fc1.{p}",
                "output.dense.{p}": "mlp.fc2.{p}",
                "lambda_1": "attention_scale",
                "lambda_2": "mlp_scale",
            },
        ),
        ("layernorm.{p}", "norm.{p}"),  # final LayerNorm, with CLS pooling only
        ("pooler.layernorm.{p}", "pooler.norm.{p}"),  # LayerNorm after mean pooling
    ],
    fused=[
        block_fused(
            _LAYER, tuple(f"attention.attention.{name}.weight" for name in ("query", "key", "value")), "attention.qkv.weight"
        ),
    ],
    # a buffer (computed, not learned) that older checkpoints stored
    ignored=[r"(encoder\.|encoder\.layer\.\d+\.attention\.attention\.)relative_position_bias\.relative_position_index"],
)

IMAGE_CLASSIFICATION_KEYS = KeyMap(renames=unchanged("classifier.{p}"))


def _conv_norm(reference: str, ours: str) -> list[tuple[str, str]]:
    """A convolution (no bias) + BatchNorm + ReLU unit."""
    return [(reference + ".convolution.{p}", ours + ".conv.{p}"), (reference + ".normalization.{p}", ours + ".norm.{p}")]


SEMANTIC_SEGMENTATION_KEYS = KeyMap(
    renames=[
        # feature pyramid from single-scale ViT features; fpn1 = deconv, BatchNorm, GELU, deconv
        *renames_under(
            "fpn1.", "feature_pyramid.upsample_by_4.", {"0.{p}": "first_deconv.{p}", "1.{p}": "norm.{p}", "3.{p}": "second_deconv.{p}"}
        ),
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
