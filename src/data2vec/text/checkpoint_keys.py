"""The text family's parameter names: reference (RoBERTa layout) <-> ours."""

from ..core.checkpoint import KeyMap, block_fused, block_renames, unchanged

_LAYER = "encoder.layer.{i}."

BACKBONE_KEYS = KeyMap(
    renames=[
        *unchanged(*(f"embeddings.{kind}_embeddings.weight" for kind in ("word", "position", "token_type"))),
        ("embeddings.LayerNorm.{p}", "embeddings.norm.{p}"),
        *block_renames(
            _LAYER,
            {
                "attention.output.dense.{p}": "attention.out_proj.{p}",
                "attention.output.LayerNorm.{p}": "attention_norm.{p}",
                "crossattention.self.query.{p}": "cross_attention.query.{p}",
                "crossattention.output.dense.{p}": "cross_attention.out_proj.{p}",
                "crossattention.output.LayerNorm.{p}": "cross_attention_norm.{p}",
                "intermediate.dense.{p}": "mlp.fc1.{p}",
                "output.dense.{p}": "mlp.fc2.{p}",
                "output.LayerNorm.{p}": "mlp_norm.{p}",
            },
        ),
        *unchanged("pooler.dense.{p}"),
    ],
    fused=[
        block_fused(_LAYER, tuple(f"attention.self.{name}.{{p}}" for name in ("query", "key", "value")), "attention.qkv.{p}"),
        block_fused(_LAYER, ("crossattention.self.key.{p}", "crossattention.self.value.{p}"), "cross_attention.key_value.{p}"),
    ],
    # buffers that older checkpoints stored
    ignored=[r"embeddings\.position_ids", r"embeddings\.token_type_ids"],
)

LM_HEAD_KEYS = KeyMap(
    renames=[
        ("lm_head.layer_norm.{p}", "lm_head.norm.{p}"),
        *unchanged("lm_head.dense.{p}", "lm_head.bias", "lm_head.decoder.weight"),
    ],
    # the decoder's bias is the same tensor as lm_head.bias in the reference
    ignored=[r"lm_head\.decoder\.bias"],
)

SEQUENCE_CLASSIFICATION_KEYS = KeyMap(renames=unchanged("classifier.dense.{p}", "classifier.out_proj.{p}"))

CLASSIFIER_KEYS = KeyMap(renames=unchanged("classifier.{p}"))

QUESTION_ANSWERING_KEYS = KeyMap(renames=unchanged("qa_outputs.{p}"))
