"""data2vec text: the RoBERTa-style encoder (or decoder) and its six task heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.attention import attention_bias_from_masks
from ..core.layers import TransformerBlock
from ..core.losses import question_answering_loss, sequence_classification_loss
from ..core.modeling import PreTrainedModel, init_standard
from ..core.outputs import CausalLMOutput, EncoderOutput, PredictionOutput, QuestionAnsweringOutput
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
    ) -> torch.Tensor:
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
        if int(position_ids.max()) >= limit:
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


class Data2VecTextPreTrainedModel(PreTrainedModel):
    config_class = Data2VecTextConfig
    reference_prefix = "data2vec_text"
    backbone_keys = checkpoint_keys.BACKBONE_KEYS

    def _init_weights(self, module: nn.Module) -> None:
        if init_standard(module, self.config.initializer_range):
            return
        if isinstance(module, LMHead):
            nn.init.zeros_(module.bias)


class Data2VecTextModel(Data2VecTextPreTrainedModel):
    """The encoder; with ``is_decoder`` a causal decoder with optional cross attention and a cache."""

    def __init__(self, config: Data2VecTextConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.embeddings = TextEmbeddings(config)
        self.layers = nn.ModuleList(
            TransformerBlock(
                config.hidden_size,
                config.num_attention_heads,
                config.intermediate_size,
                act=config.hidden_act,
                layer_norm_eps=config.layer_norm_eps,
                hidden_dropout=config.hidden_dropout_prob,
                attention_dropout=config.attention_probs_dropout_prob,
                add_cross_attention=config.add_cross_attention,
            )
            for _ in range(config.num_hidden_layers)
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
            if input_ids.numel() and (int(input_ids.max()) >= self.config.vocab_size or int(input_ids.min()) < 0):
                bad = int(input_ids.max()) if int(input_ids.max()) >= self.config.vocab_size else int(input_ids.min())
                raise ValueError(
                    f"token id {bad} is outside the vocabulary of {self.config.vocab_size} ids: "
                    "was the text tokenised with this model's tokenizer?"
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
            if token_type_ids.numel() and int(token_type_ids.max()) >= self.config.type_vocab_size:
                raise ValueError(
                    f"token type {int(token_type_ids.max())} is outside type_vocab_size={self.config.type_vocab_size}"
                )

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
        output_feed_forward_states: bool = False,
    ) -> EncoderOutput:
        """Returns ``EncoderOutput``; ``output_feed_forward_states`` adds, as the extra attribute
        ``feed_forward_states``, each block's feed-forward output before its residual and
        LayerNorm (the data2vec regression targets)."""
        is_decoder = self.config.is_decoder
        use_cache = (self.config.use_cache if use_cache is None else use_cache) and is_decoder
        past_length = past_key_values[0][0][0].shape[2] if past_key_values else 0
        self._check_inputs(input_ids, inputs_embeds, attention_mask, token_type_ids, past_length)

        hidden_states = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds, past_length)
        batch, length = hidden_states.shape[:2]
        attention_bias = attention_bias_from_masks(
            attention_mask,
            query_length=length,
            key_length=past_length + length,
            causal=is_decoder,
            dtype=hidden_states.dtype,
            device=hidden_states.device,
        )
        encoder_attention_bias = None
        if encoder_hidden_states is not None and encoder_attention_mask is not None:
            encoder_attention_bias = attention_bias_from_masks(
                encoder_attention_mask,
                query_length=length,
                key_length=encoder_hidden_states.shape[1],
                dtype=hidden_states.dtype,
            )

        all_hidden = [hidden_states] if output_hidden_states else None
        all_attentions = [] if output_attentions else None
        all_cross = [] if output_attentions and encoder_hidden_states is not None else None
        feed_forward_states = [] if output_feed_forward_states else None
        presents = [] if use_cache else None
        for index, layer in enumerate(self.layers):
            result = layer(
                hidden_states,
                attention_bias,
                encoder_hidden_states=encoder_hidden_states if is_decoder else None,
                encoder_attention_bias=encoder_attention_bias,
                past_key_value=past_key_values[index] if past_key_values else None,
                use_cache=use_cache,
                output_attentions=output_attentions,
            )
            hidden_states = result.hidden_states
            if all_hidden is not None:
                all_hidden.append(hidden_states)
            if all_attentions is not None:
                all_attentions.append(result.attention)
            if all_cross is not None:
                all_cross.append(result.cross_attention)
            if feed_forward_states is not None:
                feed_forward_states.append(result.feed_forward_output)
            if presents is not None:
                presents.append(result.present_key_value)

        output = EncoderOutput(
            last_hidden_state=hidden_states,
            pooler_output=self.pooler(hidden_states) if self.pooler is not None else None,
            hidden_states=tuple(all_hidden) if all_hidden is not None else None,
            past_key_values=tuple(presents) if presents is not None else None,
            attentions=tuple(all_attentions) if all_attentions is not None else None,
            cross_attentions=tuple(all_cross) if all_cross else None,
        )
        if feed_forward_states is not None:
            output.feed_forward_states = tuple(feed_forward_states)
        return output


# ---------------------------------------------------------------------------- heads
class _TextHeadModel(Data2VecTextPreTrainedModel):
    """A head on top of ``self.backbone`` (the reference calls it ``data2vec_text``)."""


class LMHead(nn.Module):
    """dense -> GELU -> LayerNorm -> vocabulary projection (weight tied to the word embeddings) + bias."""

    def __init__(self, config: Data2VecTextConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.norm(F.gelu(self.dense(hidden_states)))) + self.bias  # (batch, length, vocab)


class Data2VecTextForMaskedLM(_TextHeadModel):
    head_keys = checkpoint_keys.LM_HEAD_KEYS
    tied_weights = {"lm_head.decoder.weight": "backbone.embeddings.word_embeddings.weight"}

    def __init__(self, config: Data2VecTextConfig) -> None:
        super().__init__(config)
        self.backbone = Data2VecTextModel(config, add_pooling_layer=False)
        self.lm_head = LMHead(config)
        self.post_init()

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        labels=None,
        output_attentions=False,
        output_hidden_states=False,
    ) -> PredictionOutput:
        """labels: (batch, length) token ids, -100 where no prediction is scored."""
        outputs = self.backbone(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        logits = self.lm_head(outputs.last_hidden_state)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, self.config.vocab_size).float(), labels.view(-1).to(logits.device))
        return PredictionOutput(loss, logits, outputs.hidden_states, outputs.attentions)


class Data2VecTextForCausalLM(_TextHeadModel):
    head_keys = checkpoint_keys.LM_HEAD_KEYS
    tied_weights = {"lm_head.decoder.weight": "backbone.embeddings.word_embeddings.weight"}

    def __init__(self, config: Data2VecTextConfig) -> None:
        super().__init__(config)
        if not config.is_decoder:
            import warnings

            warnings.warn(
                "Data2VecTextForCausalLM with is_decoder=False attends in both directions; "
                "set is_decoder=True to use it as a left-to-right language model",
                stacklevel=2,
            )
        self.backbone = Data2VecTextModel(config, add_pooling_layer=False)
        self.lm_head = LMHead(config)
        self.post_init()

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        labels=None,
        past_key_values=None,
        use_cache=None,
        output_attentions=False,
        output_hidden_states=False,
    ) -> CausalLMOutput:
        """labels: (batch, length) token ids; position t is scored on predicting token t+1, -100 ignored."""
        if labels is not None:
            use_cache = False
        outputs = self.backbone(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            past_key_values=past_key_values,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        logits = self.lm_head(outputs.last_hidden_state)
        loss = None
        if labels is not None:
            shifted_logits = logits[:, :-1].reshape(-1, self.config.vocab_size).float()
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
        super().__init__(config)
        self.num_labels = config.num_labels
        self.backbone = Data2VecTextModel(config, add_pooling_layer=False)
        self.classifier = ClassificationHead(config)
        self.post_init()

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        labels=None,
        output_attentions=False,
        output_hidden_states=False,
    ) -> PredictionOutput:
        """labels: (batch,) class ids, (batch,) or (batch, num_labels) floats for regression,
        (batch, num_labels) 0/1 floats for multi-label; ``config.problem_type`` decides, or the
        labels' dtype and ``num_labels`` when it is unset."""
        outputs = self.backbone(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        logits = self.classifier(outputs.last_hidden_state)
        loss = None
        if labels is not None:
            loss = sequence_classification_loss(logits, labels, self.config.problem_type)
        return PredictionOutput(loss, logits, outputs.hidden_states, outputs.attentions)


class Data2VecTextForMultipleChoice(_TextHeadModel):
    head_keys = checkpoint_keys.CLASSIFIER_KEYS

    def __init__(self, config: Data2VecTextConfig) -> None:
        super().__init__(config)
        self.backbone = Data2VecTextModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()

    def forward(
        self,
        input_ids=None,
        token_type_ids=None,
        attention_mask=None,
        labels=None,
        position_ids=None,
        inputs_embeds=None,
        output_attentions=False,
        output_hidden_states=False,
    ) -> PredictionOutput:
        """Inputs are (batch, num_choices, length); labels (batch,) the index of the right choice."""
        reference = input_ids if input_ids is not None else inputs_embeds
        if reference is None or reference.dim() < 3:
            raise ValueError("multiple choice inputs must be (batch, num_choices, length)")
        num_choices = reference.shape[1]

        def flat(tensor):
            return None if tensor is None else tensor.reshape(-1, *tensor.shape[2:])

        outputs = self.backbone(
            input_ids=flat(input_ids),
            attention_mask=flat(attention_mask),
            token_type_ids=flat(token_type_ids),
            position_ids=flat(position_ids),
            inputs_embeds=flat(inputs_embeds),
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        logits = self.classifier(self.dropout(outputs.pooler_output)).view(-1, num_choices)  # (batch, num_choices)
        loss = F.cross_entropy(logits, labels.to(logits.device)) if labels is not None else None
        return PredictionOutput(loss, logits, outputs.hidden_states, outputs.attentions)


class Data2VecTextForTokenClassification(_TextHeadModel):
    head_keys = checkpoint_keys.CLASSIFIER_KEYS

    def __init__(self, config: Data2VecTextConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.backbone = Data2VecTextModel(config, add_pooling_layer=False)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        labels=None,
        output_attentions=False,
        output_hidden_states=False,
    ) -> PredictionOutput:
        """labels: (batch, length) class ids, -100 where not scored."""
        outputs = self.backbone(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        logits = self.classifier(self.dropout(outputs.last_hidden_state))  # (batch, length, num_labels)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1).to(logits.device))
        return PredictionOutput(loss, logits, outputs.hidden_states, outputs.attentions)


class Data2VecTextForQuestionAnswering(_TextHeadModel):
    head_keys = checkpoint_keys.QUESTION_ANSWERING_KEYS

    def __init__(self, config: Data2VecTextConfig) -> None:
        super().__init__(config)
        self.backbone = Data2VecTextModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        inputs_embeds=None,
        start_positions=None,
        end_positions=None,
        output_attentions=False,
        output_hidden_states=False,
    ) -> QuestionAnsweringOutput:
        """start_positions / end_positions: (batch,) token indices of the answer span."""
        outputs = self.backbone(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        logits = self.qa_outputs(outputs.last_hidden_state)  # (batch, length, 2)
        start_logits, end_logits = (part.squeeze(-1).contiguous() for part in logits.split(1, dim=-1))
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = question_answering_loss(start_logits, end_logits, start_positions, end_positions)
        return QuestionAnsweringOutput(loss, start_logits, end_logits, outputs.hidden_states, outputs.attentions)
