"""The speech family's parameter names: reference (wav2vec 2.0 layout) <-> ours."""

from ..core.checkpoint import KeyMap

_LAYER = "encoder.layers.{i}."

BACKBONE_KEYS = KeyMap(
    renames=[
        ("feature_extractor.conv_layers.{i}.conv.{p}", "feature_encoder.layers.{i}.conv.{p}"),
        ("feature_extractor.conv_layers.{i}.layer_norm.{p}", "feature_encoder.layers.{i}.norm.{p}"),
        ("feature_projection.layer_norm.{p}", "feature_projection.norm.{p}"),
        ("feature_projection.projection.{p}", "feature_projection.linear.{p}"),
        ("masked_spec_embed", "masked_spec_embed"),
        ("encoder.pos_conv_embed.layers.{i}.conv.{p}", "positional_conv.layers.{i}.conv.{p}"),
        ("encoder.layer_norm.{p}", "encoder_norm.{p}"),
        (_LAYER + "attention.out_proj.{p}", "layers.{i}.attention.out_proj.{p}"),
        (_LAYER + "layer_norm.{p}", "layers.{i}.attention_norm.{p}"),
        (_LAYER + "feed_forward.intermediate_dense.{p}", "layers.{i}.mlp.fc1.{p}"),
        (_LAYER + "feed_forward.output_dense.{p}", "layers.{i}.mlp.fc2.{p}"),
        (_LAYER + "final_layer_norm.{p}", "layers.{i}.mlp_norm.{p}"),
        ("adapter.proj.{p}", "adapter.projection.{p}"),
        ("adapter.proj_layer_norm.{p}", "adapter.projection_norm.{p}"),
        ("adapter.layers.{i}.conv.{p}", "adapter.layers.{i}.conv.{p}"),
    ],
    fused=[
        (tuple(_LAYER + f"attention.{name}_proj.{{p}}" for name in ("q", "k", "v")), "layers.{i}.attention.qkv.{p}"),
    ],
)

CTC_KEYS = KeyMap(renames=[("lm_head.{p}", "lm_head.{p}")])

SEQUENCE_CLASSIFICATION_KEYS = KeyMap(
    renames=[
        ("layer_weights", "layer_weights"),
        ("projector.{p}", "projector.{p}"),
        ("classifier.{p}", "classifier.{p}"),
    ]
)

FRAME_CLASSIFICATION_KEYS = KeyMap(renames=[("layer_weights", "layer_weights"), ("classifier.{p}", "classifier.{p}")])

XVECTOR_KEYS = KeyMap(
    renames=[
        ("layer_weights", "layer_weights"),
        ("projector.{p}", "projector.{p}"),
        ("tdnn.{i}.kernel.{p}", "tdnn.{i}.kernel.{p}"),
        # `feature_extractor.weight` here is the x-vector embedding layer, not the conv encoder
        ("feature_extractor.{p}", "embedding.{p}"),
        ("classifier.{p}", "classifier.{p}"),
        ("objective.weight", "am_softmax.weight"),
    ]
)
