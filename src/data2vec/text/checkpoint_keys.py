"""The text family's parameter names: reference (RoBERTa layout) <-> ours."""

from ..core.checkpoint import KeyMap

_LAYER = "encoder.layer.{i}."

BACKBONE_KEYS = KeyMap(
    renames=[
        ("embeddings.word_embeddings.weight", "embeddings.word_embeddings.weight"),
        ("embeddings.position_embeddings.weight", "embeddings.position_embeddings.weight"),
        ("embeddings.token_type_embeddings.weight", "embeddings.token_type_embeddings.weight"),
        ("embeddings.LayerNorm.{p}", "embeddings.norm.{p}"),
        (_LAYER + "attention.output.dense.{p}", "layers.{i}.attention.out_proj.{p}"),
        (_LAYER + "attention.output.LayerNorm.{p}", "layers.{i}.attention_norm.{p}"),
        (_LAYER + "crossattention.self.query.{p}", "layers.{i}.cross_attention.query.{p}"),
        (_LAYER + "crossattention.output.dense.{p}", "layers.{i}.cross_attention.out_proj.{p}"),
        (_LAYER + "crossattention.output.LayerNorm.{p}", "layers.{i}.cross_attention_norm.{p}"),
        (_LAYER + "intermediate.dense.{p}", "layers.{i}.mlp.fc1.{p}"),
        (_LAYER + "output.dense.{p}", "layers.{i}.mlp.fc2.{p}"),
        (_LAYER + "output.LayerNorm.{p}", "layers.{i}.mlp_norm.{p}"),
        ("pooler.dense.{p}", "pooler.dense.{p}"),
    ],
    fused=[
        (
            tuple(_LAYER + f"attention.self.{name}.{{p}}" for name in ("query", "key", "value")),
            "layers.{i}.attention.qkv.{p}",
        ),
        (
            tuple(_LAYER + f"crossattention.self.{name}.{{p}}" for name in ("key", "value")),
            "layers.{i}.cross_attention.key_value.{p}",
        ),
    ],
    # buffers that older checkpoints stored
    ignored=[r"embeddings\.position_ids", r"embeddings\.token_type_ids"],
)

LM_HEAD_KEYS = KeyMap(
    renames=[
        ("lm_head.dense.{p}", "lm_head.dense.{p}"),
        ("lm_head.layer_norm.{p}", "lm_head.norm.{p}"),
        ("lm_head.bias", "lm_head.bias"),
        ("lm_head.decoder.weight", "lm_head.decoder.weight"),
    ],
    # the decoder's bias is the same tensor as lm_head.bias in the reference
    ignored=[r"lm_head\.decoder\.bias"],
)

SEQUENCE_CLASSIFICATION_KEYS = KeyMap(
    renames=[("classifier.dense.{p}", "classifier.dense.{p}"), ("classifier.out_proj.{p}", "classifier.out_proj.{p}")]
)

CLASSIFIER_KEYS = KeyMap(renames=[("classifier.{p}", "classifier.{p}")])

QUESTION_ANSWERING_KEYS = KeyMap(renames=[("qa_outputs.{p}", "qa_outputs.{p}")])
