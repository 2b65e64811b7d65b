"""data2vec text: the RoBERTa-style encoder (or decoder) and its six task heads."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ..core.attention import attention_bias_from_masks
from ..core.encoder import Encoder
from ..core.layers import PostNormBlock, block_arguments, capturing_graph
from ..core.losses import question_answering_loss, sequence_classification_loss
from ..core.modeling import Backbone, Embedded, HeadModel, ModelFamily, init_standard
from ..core.outputs import CausalLMOutput, EncoderOutput, PredictionOutput, QuestionAnsweringOutput, encoder_output
from . import checkpoint_keys
from .config import Data2VecTextConfig
from .generation import generate

PastKeyValues = tuple[tuple[tuple[torch.Tensor, torch.Tensor], ...], ...]


class TextEmbeddings(nn.Module):
    """word + position + token type embeddings, then LayerNorm and dropout.

    Positions follow RoBERTa: real tokens count up from ``padding_idx + 1``, padding tokens
    take position ``padding_idx``."""

    def __init__(self, config: Data2VecTextConfig) -> None:
        super().__init__()
        self.padding_idx = config.pad_token_id
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(
            config.max_position_embeddings, config.hidden_size, padding_idx=config.pad_token_id
        )
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def position_ids_from_input_ids(self, input_ids: torch.Tensor, past_length: int = 0) -> torch.Tensor:
        is_token = input_ids.ne(self.padding_idx).long()
        return (torch.cumsum(is_token, dim=1) + past_length) * is_token + self.padding_idx

    def forward(
        self,
        input_ids: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
        past_length: int = 0,
        validate: bool = True,
    ) -> torch.Tensor:
        """``validate``: check that the positions fit the table (reads their values)."""
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        batch, length = inputs_embeds.shape[:2]
        if position_ids is None:
            if input_ids is not None:
                position_ids = self.position_ids_from_input_ids(input_ids, past_length)
            else:  # no ids to find padding in: count every position
                start = self.padding_idx + 1
                position_ids = torch.arange(start, start + length, device=inputs_embeds.device).expand(batch, length)
        limit = self.position_embeddings.num_embeddings
        if validate and int(position_ids.max()) >= limit:
            raise ValueError(
                f"the input needs position {int(position_ids.max())} but the model has {limit} position embeddings, "
                f"i.e. at most {limit - self.padding_idx - 1} tokens (max_position_embeddings - {self.padding_idx + 1}) "
                "including <s> and </s>: truncate the text (tokenizer(..., truncation=True, max_length=...))"
            )
        if token_type_ids is None:
            token_type_ids = torch.zeros((batch, length), dtype=torch.long, device=inputs_embeds.device)
        embeddings = inputs_embeds + self.token_type_embeddings(token_type_ids) + self.position_embeddings(position_ids)
        return self.dropout(self.norm(embeddings))  # (batch, length, hidden)


class Pooler(nn.Module):
    """tanh(dense(first token))."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden_states[:, 0]))


def _init_text_weights(config: Data2VecTextConfig, module: nn.Module) -> None:
    if init_standard(module, config.initializer_range):
        return
    if isinstance(module, LMHead):
        nn.init.zeros_(module.bias)


TEXT = ModelFamily(Data2VecTextConfig, "data2vec_text", checkpoint_keys.BACKBONE_KEYS, _init_text_weights)


class Data2VecTextModel(Backbone):
    """The encoder; with ``is_decoder`` a causal decoder with optional cross attention and a cache."""

    family = TEXT

    def __init__(self, config: Data2VecTextConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.embeddings = TextEmbeddings(config)
        block = block_arguments(config, config.hidden_dropout_prob, config.attention_probs_dropout_prob)
        self.encoder = Encoder(
            PostNormBlock(**block, add_cross_attention=config.add_cross_attention) for _ in range(config.num_hidden_layers)
        )
        self.pooler = Pooler(config.hidden_size) if add_pooling_layer else None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def _check_inputs(self, input_ids, inputs_embeds, attention_mask, token_type_ids, past_length):
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        if input_ids is not None:
            if input_ids.dim() != 2:
                raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
            if input_ids.numel() and self.should_validate(input_ids):
                largest, smallest = int(input_ids.max()), int(input_ids.min())
                if largest >= self.config.vocab_size or smallest < 0:
                    raise ValueError(
                        f"token id {largest if largest >= self.config.vocab_size else smallest} is outside the "
                        f"vocabulary of {self.config.vocab_size} ids: was the text tokenised with this model's tokenizer?"
                    )
            shape = tuple(input_ids.shape)
        else:
            if inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != self.config.hidden_size:
                raise ValueError(
                    f"inputs_embeds must be (batch, length, {self.config.hidden_size}), got {tuple(inputs_embeds.shape)}"
                )
            shape = tuple(inputs_embeds.shape[:2])
        if attention_mask is not None and tuple(attention_mask.shape) != (shape[0], shape[1] + past_length):
            raise ValueError(
                f"attention_mask has shape {tuple(attention_mask.shape)} but the input is {shape}"
                + (f" after {past_length} cached positions" if past_length else "")
                + f": expected ({shape[0]}, {shape[1] + past_length})"
            )
        if token_type_ids is not None:
            if tuple(token_type_ids.shape) != shape:
                raise ValueError(f"token_type_ids has shape {tuple(token_type_ids.shape)}, expected {shape}")
            if token_type_ids.numel() and self.should_validate(token_type_ids):
                if int(token_type_ids.max()) >= self.config.type_vocab_size:
                    raise ValueError(
                        f"token type {int(token_type_ids.max())} is outside type_vocab_size={self.config.type_vocab_size}"
                    )

    def embed(
        self,
        input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
        past_length: int = 0,
        drop_padding: bool = False,
    ) -> Embedded:
        """Check the inputs (those of ``forward``, after ``past_length`` cached positions); token +
        position + type embeddings and the padding (and, for a decoder, causal) attention bias;
        with ``drop_padding`` and a mask, the real tokens for the encoder to run on alone."""
        self._check_inputs(input_ids, inputs_embeds, attention_mask, token_type_ids, past_length)
        probe = next(tensor for tensor in (position_ids, input_ids, inputs_embeds) if tensor is not None)
        validate = self.should_validate(probe)
        hidden_states = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds, past_length, validate)
        length = hidden_states.shape[1]
        attention_bias = attention_bias_from_masks(
            attention_mask,
            query_length=length,
            key_length=past_length + length,
            causal=self.config.is_decoder,
            dtype=hidden_states.dtype,
            device=hidden_states.device,
        )
        real_tokens = attention_mask.bool() if drop_padding and attention_mask is not None else None
        return Embedded(hidden_states, attention_bias, real_tokens=real_tokens, causal=self.config.is_decoder)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        past_key_values: PastKeyValues | None = None,
        use_cache: bool | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        drop_padding: bool = False,
    ) -> EncoderOutput:
        """The reference's arguments, and ``drop_padding``: with an ``attention_mask``, the blocks run
        on the real tokens only (no work on padding; not with a cache, cross attention or
        ``output_attentions``). The real positions get the padded batch's outputs (within float
        rounding); the padded positions of ``last_hidden_state`` and ``hidden_states`` are zeros."""
        is_decoder = self.config.is_decoder
        drop_padding = drop_padding and attention_mask is not None
        if drop_padding and use_cache is None:
            use_cache = False
        use_cache = (self.config.use_cache if use_cache is None else use_cache) and is_decoder
        past_length = past_key_values[0][0][0].shape[2] if past_key_values else 0
        embedded = self.embed(
            input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, past_length, drop_padding
        )
        encoder_attention_bias = None
        if encoder_hidden_states is not None and encoder_attention_mask is not None:
            encoder_attention_bias = attention_bias_from_masks(
                encoder_attention_mask,
                query_length=embedded.hidden_states.shape[1],
                key_length=encoder_hidden_states.shape[1],
                dtype=embedded.hidden_states.dtype,
            )
        result = self.encoder(
            embedded.hidden_states,
            embedded.attention_bias,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            encoder_hidden_states=encoder_hidden_states if is_decoder else None,
            encoder_attention_bias=encoder_attention_bias,
            past_key_values=past_key_values,
            use_cache=use_cache,
            drop_padding=embedded.real_tokens,
            causal=embedded.causal,
        )
        return encoder_output(result, self.pooler)


# ---------------------------------------------------------------------------- heads
class _TextHeadModel(HeadModel):
    """A head on top of ``self.backbone`` (the reference calls it ``data2vec_text``).

    The heads that answer with a ``PredictionOutput`` give ``compute_logits(states)`` and
    ``compute_loss(logits, labels)``; ``predict`` runs them on the backbone's output. The sequence and
    token classification heads share this ``forward``."""

    backbone_class = Data2VecTextModel

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def compute_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def predict(self, outputs: EncoderOutput, labels: torch.Tensor | None) -> PredictionOutput:
        logits = self.compute_logits(outputs.last_hidden_state)
        loss = self.compute_loss(logits, labels.to(logits.device)) if labels is not None else None
        return PredictionOutput(loss, logits, outputs.hidden_states, outputs.attentions)

    def forward(
        self,
        input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
        labels=None,
        output_attentions=False, output_hidden_states=False, drop_padding=False,
    ) -> PredictionOutput:
        """labels: see the class's ``compute_loss``."""
        return self.predict(self.run_backbone(locals()), labels)


def _at_least_float32(logits: torch.Tensor) -> torch.Tensor:
    """Half-precision logits in float32 for the loss's softmax; float32 and float64 as they are."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


class _LinearSkippingZeroRows(torch.autograd.Function):
    """``F.linear(x, weight, bias)`` whose backward multiplies only the rows of the output gradient
    that are not all zero. A masked-LM loss reads the logits at the scored positions only (15%), so
    the other rows' gradient is zero and the vocabulary projection's two backward products (each as
    large as its forward) would be 85% multiplications by zero. Exact: a zero row adds nothing to
    the weight's gradient and gives its input row a zero gradient; only the summation order of the
    weight gradient differs from the dense product."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.bias_dtype = None if bias is None else bias.dtype
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        flat_grad = grad.reshape(-1, grad.shape[-1])
        flat_x = x.reshape(-1, x.shape[-1])
        rows = flat_grad.any(dim=-1).nonzero().squeeze(1)  # the rows the loss reads
        every_row = len(rows) == len(flat_grad)  # e.g. a causal LM's loss: no gather then
        kept = flat_grad if every_row else flat_grad.index_select(0, rows)  # (rows, out), the output's dtype
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            products = (kept @ weight.to(kept.dtype)).to(x.dtype)
            grad_x = products if every_row else flat_x.new_zeros(flat_x.shape).index_copy_(0, rows, products)
            grad_x = grad_x.view(x.shape)
        if ctx.needs_input_grad[1]:
            kept_x = flat_x if every_row else flat_x.index_select(0, rows)
            grad_weight = (kept.t() @ kept_x.to(kept.dtype)).to(weight.dtype)
        if ctx.bias_dtype is not None and ctx.needs_input_grad[2]:
            grad_bias = kept.sum(0).to(ctx.bias_dtype)
        return grad_x, grad_weight, grad_bias


class LMHead(nn.Module):
    """dense -> GELU -> LayerNorm -> vocabulary projection (weight tied to the word embeddings) + bias."""

    def __init__(self, config: Data2VecTextConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        features = self.norm(F.gelu(self.dense(hidden_states)))
        if not isinstance(self.decoder, nn.Linear):  # a replaced projection, e.g. a dynamically quantised one
            return self.decoder(features) + self.bias
        if torch.is_grad_enabled() and not capturing_graph():
            # training: the backward skips the rows no loss reads (a data-dependent row count)
            return _LinearSkippingZeroRows.apply(features, self.decoder.weight, self.bias)
        return F.linear(features, self.decoder.weight, self.bias)  # (batch, length, vocab)


class Data2VecTextForMaskedLM(_TextHeadModel):
    head_keys = checkpoint_keys.LM_HEAD_KEYS
    tied_weights = {"lm_head.decoder.weight": "backbone.embeddings.word_embeddings.weight"}

    def __init__(self, config: Data2VecTextConfig) -> None:
        super().__init__(config, add_pooling_layer=False)
        self.lm_head = LMHead(config)
        self.post_init()

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden_states)

    def compute_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The mean cross entropy over the scored positions (labels != -100), computed on their
        rows only: the softmax of the others (85% of a masked-LM batch) would be discarded."""
        labels, logits = labels.reshape(-1), logits.view(-1, self.config.vocab_size)
        if capturing_graph():  # a graph of fixed shapes: every row, the unscored ones ignored
            return F.cross_entropy(_at_least_float32(logits), labels, ignore_index=-100)
        scored = labels != -100
        return F.cross_entropy(_at_least_float32(logits[scored]), labels[scored])

    def forward(
        self,
        input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
        encoder_hidden_states=None, encoder_attention_mask=None,
        labels=None,
        output_attentions=False, output_hidden_states=False, drop_padding=False, logits_at_labels_only=False,
    ) -> PredictionOutput:
        """labels: (batch, length) token ids, -100 where no prediction is scored.

        ``logits_at_labels_only`` (with labels): the vocabulary projection runs only at the scored
        positions, the usual 15% (it is most of the head's work, a third of a base model's
        training step); the loss is the same, and ``logits`` holds their rows only,
        (scored positions, vocab), in the order of ``labels != -100``."""
        outputs = self.run_backbone(locals())
        if not (logits_at_labels_only and labels is not None):
            return self.predict(outputs, labels)
        labels = labels.to(outputs.last_hidden_state.device)
        scored = labels != -100  # (batch, length)
        logits = self.lm_head(outputs.last_hidden_state[scored])  # (scored positions, vocab)
        loss = F.cross_entropy(_at_least_float32(logits), labels[scored])
        return PredictionOutput(loss, logits, outputs.hidden_states, outputs.attentions)


class Data2VecTextForCausalLM(_TextHeadModel):
    head_keys = checkpoint_keys.LM_HEAD_KEYS
    tied_weights = {"lm_head.decoder.weight": "backbone.embeddings.word_embeddings.weight"}

    def __init__(self, config: Data2VecTextConfig) -> None:
        if not config.is_decoder:
            warnings.warn(
                "Data2VecTextForCausalLM with is_decoder=False attends in both directions; "
                "set is_decoder=True to use it as a left-to-right language model",
                stacklevel=2,
            )
        super().__init__(config, add_pooling_layer=False)
        self.lm_head = LMHead(config)
        self.post_init()

    def forward(
        self,
        input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
        encoder_hidden_states=None, encoder_attention_mask=None,
        labels=None, past_key_values=None, use_cache=None,
        output_attentions=False, output_hidden_states=False, drop_padding=False,
    ) -> CausalLMOutput:
        """labels: (batch, length) token ids; position t is scored on predicting token t+1, -100 ignored."""
        if labels is not None:
            use_cache = False
        outputs = self.run_backbone(locals())
        logits = self.lm_head(outputs.last_hidden_state)
        loss = None
        if labels is not None:
            shifted_logits = _at_least_float32(logits[:, :-1].reshape(-1, self.config.vocab_size))
            loss = F.cross_entropy(shifted_logits, labels[:, 1:].reshape(-1).to(logits.device))
        return CausalLMOutput(
            loss, logits, outputs.past_key_values, outputs.hidden_states, outputs.attentions, outputs.cross_attentions
        )

    generate = generate


class ClassificationHead(nn.Module):
    """First token -> dropout -> dense -> tanh -> dropout -> out_proj."""

    def __init__(self, config: Data2VecTextConfig) -> None:
        super().__init__()
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        x = self.dropout(hidden_states[:, 0])
        x = self.dropout(torch.tanh(self.dense(x)))
        return self.out_proj(x)  # (batch, num_labels)


class Data2VecTextForSequenceClassification(_TextHeadModel):
    head_keys = checkpoint_keys.SEQUENCE_CLASSIFICATION_KEYS

    def __init__(self, config: Data2VecTextConfig) -> None:
        super().__init__(config, add_pooling_layer=False)
        self.num_labels = config.num_labels
        self.classifier = ClassificationHead(config)
        self.post_init()

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.classifier(hidden_states)  # (batch, num_labels)

    def compute_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """labels: (batch,) class ids, (batch,) or (batch, num_labels) floats for regression,
        (batch, num_labels) 0/1 floats for multi-label; ``config.problem_type`` decides, or the
        labels' dtype and ``num_labels`` when it is unset."""
        return sequence_classification_loss(logits, labels, self.config.problem_type)


class Data2VecTextForMultipleChoice(_TextHeadModel):
    head_keys = checkpoint_keys.CLASSIFIER_KEYS

    def __init__(self, config: Data2VecTextConfig) -> None:
        super().__init__(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()

    def forward(
        self,
        input_ids=None, token_type_ids=None, attention_mask=None,
        labels=None,
        position_ids=None, inputs_embeds=None,
        output_attentions=False, output_hidden_states=False, drop_padding=False,
    ) -> PredictionOutput:
        """Inputs are (batch, num_choices, length); labels (batch,) the index of the right choice."""
        reference = input_ids if input_ids is not None else inputs_embeds
        if reference is None or reference.dim() < 3:
            raise ValueError("multiple choice inputs must be (batch, num_choices, length)")
        num_choices = reference.shape[1]

        def flat(tensor):
            return None if tensor is None else tensor.reshape(-1, *tensor.shape[2:])

        sequences = (input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds)
        outputs = self.backbone(
            *(flat(tensor) for tensor in sequences),
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            drop_padding=drop_padding,
        )
        logits = self.classifier(self.dropout(outputs.pooler_output)).view(-1, num_choices)  # (batch, num_choices)
        loss = F.cross_entropy(logits, labels.to(logits.device)) if labels is not None else None
        return PredictionOutput(loss, logits, outputs.hidden_states, outputs.attentions)


class Data2VecTextForTokenClassification(_TextHeadModel):
    head_keys = checkpoint_keys.CLASSIFIER_KEYS

    def __init__(self, config: Data2VecTextConfig) -> None:
        super().__init__(config, add_pooling_layer=False)
        self.num_labels = config.num_labels
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(hidden_states))  # (batch, length, num_labels)

    def compute_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """labels: (batch, length) class ids, -100 where not scored."""
        return F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))


class Data2VecTextForQuestionAnswering(_TextHeadModel):
    head_keys = checkpoint_keys.QUESTION_ANSWERING_KEYS

    def __init__(self, config: Data2VecTextConfig) -> None:
        super().__init__(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
        start_positions=None, end_positions=None,
        output_attentions=False, output_hidden_states=False, drop_padding=False,
    ) -> QuestionAnsweringOutput:
        """start_positions / end_positions: (batch,) token indices of the answer span."""
        outputs = self.run_backbone(locals())
        logits = self.qa_outputs(outputs.last_hidden_state)  # (batch, length, 2)
        start_logits, end_logits = (part.squeeze(-1).contiguous() for part in logits.split(1, dim=-1))
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = question_answering_loss(start_logits, end_logits, start_positions, end_positions)
        return QuestionAnsweringOutput(loss, start_logits, end_logits, outputs.hidden_states, outputs.attentions)
