"""Task heads on the speech backbone: CTC speech recognition, utterance classification,
frame classification and x-vector speaker embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..core.losses import infer_problem_type, sequence_classification_loss
from ..core.modeling import HeadModel
from ..core.outputs import PredictionOutput, XVectorOutput
from . import checkpoint_keys
from .config import Data2VecAudioConfig
from .feature_encoder import feature_encoder_output_length, minimum_input_length
from .model import Data2VecAudioModel, frame_attention_mask

IGNORE_INDEX = -100


def _as_batch(mask: torch.Tensor | None) -> torch.Tensor | None:
    """The backbone accepts one 1-D utterance; heads work on (batch, samples)."""
    return mask[None] if mask is not None and mask.dim() == 1 else mask


class _AudioHeadModel(HeadModel):
    """A head on ``self.backbone`` (the reference calls it ``data2vec_audio``). With
    ``weighted_layer_sum`` (and ``config.use_weighted_layer_sum``) the head reads a learned
    softmax-weighted sum of the transformer's input and every layer's output."""

    backbone_class = Data2VecAudioModel

    def __init__(self, config: Data2VecAudioConfig, weighted_layer_sum: bool) -> None:
        super().__init__(config)
        if weighted_layer_sum and config.use_weighted_layer_sum:
            layers = config.num_hidden_layers + 1  # the transformer's input and each layer's output
            self.layer_weights = nn.Parameter(torch.full((layers,), 1.0 / layers))
        else:
            self.layer_weights = None

    def freeze_feature_encoder(self) -> None:
        """Stop gradients into the conv feature encoder (usual when fine-tuning)."""
        self.backbone.freeze_feature_encoder()

    def check_labels(self, labels: torch.Tensor) -> None:
        """Refuse labels the head cannot score, before the backbone runs."""

    def predict(
        self,
        states: torch.Tensor,
        adapted: bool,
        attention_mask: torch.Tensor | None,
        input_values: torch.Tensor,
        labels: torch.Tensor | None,
    ) -> PredictionOutput | XVectorOutput:
        """The head on ``states`` (batch, frames, width), the frames it reads (``adapted``: whether
        they passed the adapter); the output's loss and logits (hidden states are added by ``forward``)."""
        raise NotImplementedError

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        mask_time_indices: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        drop_padding: bool = False,
    ) -> PredictionOutput | XVectorOutput:
        """input_values, attention_mask, mask_time_indices, drop_padding: as for
        ``Data2VecAudioModel``; labels: see the class's ``predict``."""
        if labels is not None:
            self.check_labels(labels)
        outputs = self.run_backbone(locals(), output_hidden_states=output_hidden_states or self.layer_weights is not None)
        if self.layer_weights is None:
            states, adapted = outputs.last_hidden_state, self.backbone.adapter is not None
        else:  # the weighted sum of the transformer's input and every layer's output
            stacked = torch.stack(outputs.hidden_states, dim=1)  # (batch, layers, frames, hidden)
            weights = self.layer_weights.softmax(dim=-1)
            states, adapted = (stacked * weights[None, :, None, None]).sum(dim=1), False
        output = self.predict(states, adapted, _as_batch(attention_mask), input_values, labels)
        output.hidden_states = outputs.hidden_states if output_hidden_states else None
        output.attentions = outputs.attentions
        return output


# ---------------------------------------------------------------------------- CTC
def ctc_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    frame_lengths: torch.Tensor,
    blank_id: int,
    reduction: str = "sum",
    zero_infinity: bool = False,
) -> torch.Tensor:
    """logits: (batch, frames, vocab); labels: (batch, max_target) with IGNORE_INDEX (or the blank)
    as padding; frame_lengths: (batch,) valid frames per row. Log-probabilities in float32."""
    labels = labels.to(logits.device)
    is_target = (labels != IGNORE_INDEX) & (labels != blank_id)
    target_lengths = is_target.sum(-1)
    targets = labels.masked_select(is_target)
    log_probs = F.log_softmax(logits, dim=-1, dtype=torch.float32).transpose(0, 1)  # (frames, batch, vocab)
    with torch.backends.cudnn.flags(enabled=False):
        return F.ctc_loss(
            log_probs,
            targets,
            frame_lengths.to(logits.device),
            target_lengths,
            blank=blank_id,
            reduction=reduction,
            zero_infinity=zero_infinity,
        )


class Data2VecAudioForCTC(_AudioHeadModel):
    """Character-level speech recognition: dropout -> linear to ``vocab_size`` per frame."""

    head_keys = checkpoint_keys.CTC_KEYS

    def __init__(self, config: Data2VecAudioConfig) -> None:
        if config.vocab_size is None:
            raise ValueError(
                "Data2VecAudioForCTC needs config.vocab_size (the size of the CTC tokenizer's vocabulary): "
                "pass vocab_size=len(tokenizer) to from_pretrained or the config"
            )
        super().__init__(config, weighted_layer_sum=False)
        self.dropout = nn.Dropout(config.final_dropout)
        width = config.output_hidden_size if config.add_adapter else config.hidden_size
        self.lm_head = nn.Linear(width, config.vocab_size)
        self.post_init()

    def check_labels(self, labels: torch.Tensor) -> None:
        vocab_size = self.config.vocab_size
        if labels.dim() != 2:
            raise ValueError(f"labels must be (batch, target_length) token ids, got shape {tuple(labels.shape)}")
        if self.config.pad_token_id is None:
            raise ValueError("the CTC loss uses config.pad_token_id as its blank id, but it is None: set pad_token_id")
        if not labels.numel() or not self.should_validate(labels):  # the checks below read the values
            return
        if int(labels.max()) >= vocab_size:
            raise ValueError(
                f"label id {int(labels.max())} is outside the vocabulary of {vocab_size} ids (config.vocab_size): "
                "encode transcripts with this model's tokenizer, or set vocab_size to the tokenizer's size"
            )
        invalid = (labels < 0) & (labels != IGNORE_INDEX)
        if invalid.any():
            raise ValueError(
                f"label id {int(labels[invalid][0])} is negative: use {IGNORE_INDEX} for padding and ids in [0, {vocab_size})"
            )

    def predict(self, states, adapted, attention_mask, input_values, labels) -> PredictionOutput:
        """labels: (batch, target_length) character ids, padded with -100. The loss is CTC with the
        pad token as blank, reduced as ``config.ctc_loss_reduction``; each row's frame count comes
        from its attention mask through the conv arithmetic."""
        logits = self.lm_head(self.dropout(states))  # (batch, frames, vocab)
        loss = None
        if labels is not None:
            if attention_mask is not None:
                samples = attention_mask.long().sum(-1)
            else:
                samples = torch.full((logits.shape[0],), input_values.shape[-1], device=logits.device)
            frame_lengths = feature_encoder_output_length(samples, self.config, include_adapter=self.config.add_adapter)
            loss = ctc_loss(
                logits,
                labels,
                frame_lengths.long(),
                self.config.pad_token_id,
                self.config.ctc_loss_reduction,
                self.config.ctc_zero_infinity,
            )
        return PredictionOutput(loss, logits)


# ---------------------------------------------------------------------------- classification
def _no_adapter(config: Data2VecAudioConfig, name: str) -> None:
    if config.add_adapter:
        raise ValueError(f"{name} does not support the adapter (config.add_adapter=True): build it with add_adapter=False")


class Data2VecAudioForSequenceClassification(_AudioHeadModel):
    """Utterance classification (keyword spotting, emotion, ...): project each frame, average the
    real frames, classify."""

    head_keys = checkpoint_keys.SEQUENCE_CLASSIFICATION_KEYS

    def __init__(self, config: Data2VecAudioConfig) -> None:
        _no_adapter(config, "Data2VecAudioForSequenceClassification")
        super().__init__(config, weighted_layer_sum=True)
        self.projector = nn.Linear(config.hidden_size, config.classifier_proj_size)
        self.classifier = nn.Linear(config.classifier_proj_size, config.num_labels)
        self.post_init()

    def predict(self, states, adapted, attention_mask, input_values, labels) -> PredictionOutput:
        """labels: (batch,) class ids (cross entropy). With ``config.problem_type`` set to
        "regression" or "multi_label_classification", float labels as for the text heads."""
        projected = self.projector(states)  # (batch, frames, proj)
        if attention_mask is None:
            pooled = projected.mean(dim=1)
        else:
            real = frame_attention_mask(attention_mask, projected.shape[1], self.config)[..., None]  # (batch, frames, 1)
            pooled = projected.masked_fill(~real, 0.0).sum(dim=1) / real.sum(dim=1)
        logits = self.classifier(pooled)  # (batch, num_labels)
        loss = None
        if labels is not None:
            # the reference always uses cross entropy over class ids; other problem types only when asked for
            problem_type = self.config.problem_type
            if problem_type is None:
                integer = not labels.is_floating_point()
                problem_type = "single_label_classification" if integer else infer_problem_type(self.config.num_labels, labels)
            loss = sequence_classification_loss(logits, labels, problem_type)
        return PredictionOutput(loss, logits)


class Data2VecAudioForAudioFrameClassification(_AudioHeadModel):
    """One prediction per frame (speaker diarization, ...)."""

    head_keys = checkpoint_keys.FRAME_CLASSIFICATION_KEYS

    def __init__(self, config: Data2VecAudioConfig) -> None:
        _no_adapter(config, "Data2VecAudioForAudioFrameClassification")
        super().__init__(config, weighted_layer_sum=True)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.num_labels = config.num_labels
        self.post_init()

    def predict(self, states, adapted, attention_mask, input_values, labels) -> PredictionOutput:
        """labels: (batch, frames, num_labels) one-hot (or multi-hot: the first active class counts),
        like the reference; the loss is cross entropy over every frame, padding frames included."""
        logits = self.classifier(states)  # (batch, frames, num_labels)
        loss = None
        if labels is not None:
            if tuple(labels.shape) != tuple(logits.shape):
                raise ValueError(
                    f"labels must be one-hot per frame, shape (batch, frames, num_labels) = {tuple(logits.shape)}, "
                    f"got {tuple(labels.shape)}"
                )
            targets = labels.reshape(-1, self.num_labels).argmax(dim=1).to(logits.device)
            loss = F.cross_entropy(logits.reshape(-1, self.num_labels), targets)
        return PredictionOutput(loss, logits)


# ---------------------------------------------------------------------------- x-vector
class TDNNLayer(nn.Module):
    """Time-delay layer: a dilated conv over frames, then ReLU. Its weight is kept as a Linear of
    shape (out, kernel * in), the checkpoints' layout (kernel-major over the input channels)."""

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.in_dim, self.out_dim, self.kernel_size, self.dilation = in_dim, out_dim, kernel_size, dilation
        self.kernel = nn.Linear(in_dim * kernel_size, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.kernel.weight.view(self.out_dim, self.kernel_size, self.in_dim).transpose(1, 2)  # (out, in, kernel)
        x = F.conv1d(x.transpose(1, 2), weight, self.kernel.bias, dilation=self.dilation)
        return F.relu(x.transpose(1, 2))  # (batch, frames', out)


class AMSoftmaxLoss(nn.Module):
    """Additive-margin softmax: cross entropy over ``scale * (cos(x, w_c) - margin [c = label])``."""

    scale = 30.0
    margin = 0.4

    def __init__(self, input_dim: int, num_labels: int) -> None:
        super().__init__()
        self.num_labels = num_labels
        self.weight = nn.Parameter(torch.randn(input_dim, num_labels))

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = labels.flatten().to(inputs.device)
        cosine = F.normalize(inputs, dim=1) @ F.normalize(self.weight, dim=0)  # (batch, num_labels)
        is_target = F.one_hot(labels, self.num_labels).bool()
        logits = self.scale * torch.where(is_target, cosine - self.margin, cosine)
        return F.cross_entropy(logits, labels)


class Data2VecAudioForXVector(_AudioHeadModel):
    """Speaker embeddings: project, TDNN stack, mean and standard deviation over the real frames,
    linear embedding (``embeddings``), and a classifier trained with the AM-softmax loss."""

    head_keys = checkpoint_keys.XVECTOR_KEYS

    def __init__(self, config: Data2VecAudioConfig) -> None:
        if config.add_adapter and not config.use_weighted_layer_sum and config.output_hidden_size != config.hidden_size:
            raise ValueError(
                "Data2VecAudioForXVector reads hidden_size-wide frames, but the adapter outputs "
                f"output_hidden_size={config.output_hidden_size}: set output_hidden_size={config.hidden_size} "
                "or add_adapter=False"
            )
        super().__init__(config, weighted_layer_sum=True)
        self.projector = nn.Linear(config.hidden_size, config.tdnn_dim[0])
        in_dims = [config.tdnn_dim[0], *config.tdnn_dim[:-1]]
        self.tdnn = nn.ModuleList(
            TDNNLayer(in_dim, out_dim, kernel, dilation)
            for in_dim, out_dim, kernel, dilation in zip(in_dims, config.tdnn_dim, config.tdnn_kernel, config.tdnn_dilation)
        )
        self.embedding = nn.Linear(config.tdnn_dim[-1] * 2, config.xvector_output_dim)
        self.classifier = nn.Linear(config.xvector_output_dim, config.xvector_output_dim)
        self.am_softmax = AMSoftmaxLoss(config.xvector_output_dim, config.num_labels)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, AMSoftmaxLoss):
            nn.init.normal_(module.weight)

    def check_labels(self, labels: torch.Tensor) -> None:
        if not labels.numel() or not self.should_validate(labels):  # reading the values waits for the device
            return
        if int(labels.min()) < 0 or int(labels.max()) >= self.config.num_labels:
            raise ValueError(
                f"speaker labels must lie in [0, {self.config.num_labels}) (config.num_labels), "
                f"got values from {int(labels.min())} to {int(labels.max())}"
            )

    def predict(self, states, adapted, attention_mask, input_values, labels) -> XVectorOutput:
        """labels: (batch,) speaker ids in [0, num_labels) for the AM-softmax loss."""
        frames = states.shape[1]
        reduction = sum(dilation * (kernel - 1) for kernel, dilation in zip(self.config.tdnn_kernel, self.config.tdnn_dilation))
        if frames <= reduction:
            needed = minimum_input_length(self.config, include_adapter=adapted, frames=reduction + 1)
            raise ValueError(
                f"the TDNN layers need at least {reduction + 1} frames, i.e. {needed} samples of audio, "
                f"but the input gives {frames} frames: use longer audio"
            )
        hidden = self.projector(states)
        for layer in self.tdnn:
            hidden = layer(hidden)  # (batch, frames', tdnn_dim)

        if attention_mask is None:
            mean, std = hidden.mean(dim=1), hidden.std(dim=1)
        else:
            lengths = feature_encoder_output_length(attention_mask.long().sum(-1), self.config, include_adapter=adapted)
            # Like the reference, each TDNN layer counts as removing (kernel - 1) frames, its dilation
            # aside; with dilation > 1 a padded row's statistics thus take in a few frames computed
            # partly from padding (rows without padding are unaffected).
            lengths = lengths - sum(kernel - 1 for kernel in self.config.tdnn_kernel)
            real = torch.arange(hidden.shape[1], device=hidden.device)[None, :] < lengths[:, None]
            real = real[..., None]  # (batch, frames', 1)
            count = real.sum(dim=1)
            mean = hidden.masked_fill(~real, 0.0).sum(dim=1) / count
            squares = (hidden - mean[:, None]).masked_fill(~real, 0.0).square().sum(dim=1)
            std = (squares / (count - 1)).sqrt()  # unbiased, as torch.std
        embeddings = self.embedding(torch.cat([mean, std], dim=-1))  # (batch, xvector_output_dim)
        logits = self.classifier(embeddings)
        loss = self.am_softmax(logits, labels) if labels is not None else None
        return XVectorOutput(loss, logits, embeddings)
