"""The speech family's parameter names: reference (wav2vec 2.0 layout) <-> ours."""

from ..core.checkpoint import KeyMap, block_fused, block_renames, unchanged

_LAYER = "encoder.layers.{i}."

BACKBONE_KEYS = KeyMap(
    renames=[
        ("feature_extractor.conv_layers.{i}.conv.{p}", "feature_encoder.layers.{i}.conv.{p}"),
        ("feature_extractor.conv_layers.{i}.layer_norm.{p}", "feature_encoder.layers.{i}.norm.{p}"),
        ("feature_projection.layer_norm.{p}", "feature_projection.norm.{p}"),
        ("feature_projection.projection.{p}", "feature_projection.linear.{p}"),
        *unchanged("masked_spec_embed"),
        ("encoder.pos_conv_embed.layers.{i}.conv.{p}", "positional_conv.layers.{i}.conv.{p}"),
        ("encoder.layer_norm.{p}", "encoder_norm.{p}"),
        *block_renames(
            _LAYER,
            {
                "attention.out_proj.{p}": "attention.out_proj.{p}",
                "layer_norm.{p}": "attention_norm.{p}",
                "feed_forward.intermediate_dense.{p}": "mlp.fc1.{p}",
                "feed_forward.output_dense.{p}": "mlp.fc2.{p}",
                "final_layer_norm.{p}": "mlp_norm.{p}",
            },
        ),
        ("adapter.proj.{p}", "adapter.projection.{p}"),
        ("adapter.proj_layer_norm.{p}", "adapter.projection_norm.{p}"),
        *unchanged("adapter.layers.{i}.conv.{p}"),
    ],
    fused=[block_fused(_LAYER, tuple(f"attention.{name}_proj.{{p}}" for name in ("q", "k", "v")), "attention.qkv.{p}")],
)

CTC_KEYS = KeyMap(renames=unchanged("lm_head.{p}"))

SEQUENCE_CLASSIFICATION_KEYS = KeyMap(renames=unchanged("layer_weights", "projector.{p}", "classifier.{p}"))

FRAME_CLASSIFICATION_KEYS = KeyMap(renames=unchanged("layer_weights", "classifier.{p}"))

XVECTOR_KEYS = KeyMap(
    renames=[
        *unchanged("layer_weights", "projector.{p}", "tdnn.{i}.kernel.{p}", "classifier.{p}"),
        # `feature_extractor.weight` here is the x-vector embedding layer, not the conv encoder
        ("feature_extractor.{p}", "embedding.{p}"),
        ("objective.weight", "am_softmax.weight"),
    ]
)
