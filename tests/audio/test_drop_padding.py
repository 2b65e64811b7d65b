"""``drop_padding=True`` on the audio models: each utterance runs on its own samples and frames,
packed without padding through the transformer. Each must get exactly what it gets alone, for
the backbone and the heads; the padded frames are zeros. A padded batch without the option
differs from that in the last frames of a shorter row (the reference library's behaviour too):
the test shows it, so that the option's reason stays checked."""

from __future__ import annotations

import pytest
import torch

import data2vec
from tests.helpers import add_noise
from tests.training.test_tasks_audio import TINY_AUDIO

LENGTHS = (3000, 1700, 2400)  # samples of each utterance; the batch pads them to 3000


def model_of(cls, **config):
    torch.manual_seed(0)
    values = {**TINY_AUDIO, "num_labels": 3, "vocab_size": 11, **config}
    return add_noise(cls(data2vec.Data2VecAudioConfig(**values))).eval()


def padded_batch(seed=0):
    generator = torch.Generator().manual_seed(seed)
    waveforms = [torch.randn(length, generator=generator) for length in LENGTHS]
    batch = torch.zeros(len(LENGTHS), max(LENGTHS))
    mask = torch.zeros(len(LENGTHS), max(LENGTHS), dtype=torch.long)
    for row, waveform in enumerate(waveforms):
        batch[row, : len(waveform)] = waveform
        mask[row, : len(waveform)] = 1
    return waveforms, batch, mask


def frames_of(model, samples):
    from data2vec.audio.feature_encoder import feature_encoder_output_length

    return feature_encoder_output_length(samples, model.config)


def test_each_utterance_gets_what_it_gets_alone_and_the_padded_batch_does_not():
    model = model_of(data2vec.Data2VecAudioModel)
    waveforms, batch, mask = padded_batch()
    with torch.no_grad():
        packed = model(batch, mask, drop_padding=True, output_hidden_states=True)
        padded = model(batch, mask)
        alone = [model(waveform[None], output_hidden_states=True) for waveform in waveforms]
    for row, (waveform, single) in enumerate(zip(waveforms, alone)):
        frames = frames_of(model, len(waveform))
        torch.testing.assert_close(packed.last_hidden_state[row, :frames], single.last_hidden_state[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(packed.extract_features[row, :frames], single.extract_features[0], atol=1e-5, rtol=0)
        for ours, reference in zip(packed.hidden_states, single.hidden_states, strict=True):
            torch.testing.assert_close(ours[row, :frames], reference[0], atol=1e-5, rtol=0)
        assert not packed.last_hidden_state[row, frames:].any() and not packed.extract_features[row, frames:].any()
    # the shorter rows of the padded batch see padding through the positional convolutions
    frames = frames_of(model, LENGTHS[1])
    leak = (padded.last_hidden_state[1, :frames] - alone[1].last_hidden_state[0]).abs().max()
    assert leak > 1e-3


@pytest.mark.parametrize(
    "cls, output",
    [
        (data2vec.Data2VecAudioForCTC, "logits"),
        (data2vec.Data2VecAudioForSequenceClassification, "logits"),
        (data2vec.Data2VecAudioForAudioFrameClassification, "logits"),
        (data2vec.Data2VecAudioForXVector, "embeddings"),
    ],
)
def test_every_head_gives_each_utterance_its_own_result(cls, output):
    model = model_of(cls)
    waveforms, batch, mask = padded_batch(seed=1)
    with torch.no_grad():
        packed = getattr(model(batch, mask, drop_padding=True), output)
        for row, waveform in enumerate(waveforms):
            single = getattr(model(waveform[None]), output)[0]
            mine = packed[row, : single.shape[0]] if single.dim() == 2 else packed[row]
            torch.testing.assert_close(mine, single, atol=1e-4, rtol=0)


def test_training_with_given_time_masks_and_a_loss():
    model = model_of(data2vec.Data2VecAudioForCTC, mask_time_prob=0.05)
    model.train()
    waveforms, batch, mask = padded_batch(seed=2)
    frames = frames_of(model, max(LENGTHS))
    mask_time_indices = torch.zeros(len(LENGTHS), frames, dtype=torch.bool)
    mask_time_indices[:, 2:4] = True
    labels = torch.tensor([[1, 2, 3], [4, 5, -100], [6, -100, -100]])
    loss = model(batch, mask, labels=labels, mask_time_indices=mask_time_indices, drop_padding=True).loss
    loss.backward()
    assert torch.isfinite(loss) and model.lm_head.weight.grad.abs().sum() > 0
    with torch.no_grad():  # eval: the given masks are applied per utterance as they are alone
        model.eval()
        packed = model(batch, mask, mask_time_indices=mask_time_indices, drop_padding=True).logits
        row = 1
        length = frames_of(model, LENGTHS[row])
        alone = model(waveforms[row][None], mask_time_indices=mask_time_indices[row : row + 1, :length]).logits
        torch.testing.assert_close(packed[row, :length], alone[0], atol=1e-5, rtol=0)


def test_on_the_cpu_each_utterance_is_convolved_at_a_common_size_with_the_same_frames():
    """The conv feature encoder sees each utterance's samples rounded up with zeros (3000 -> 3072,
    1700 -> 1728, 2400 -> 2432: core.encoder.common_size_padding), so that oneDNN reuses its kernels;
    the frames kept are those of the utterance alone (the test above checks the values)."""
    model = model_of(data2vec.Data2VecAudioModel)
    _, batch, mask = padded_batch()
    seen = []
    model.feature_encoder.register_forward_pre_hook(lambda _, args: seen.append(args[0].shape[-1]))
    with torch.no_grad():
        model(batch, mask, drop_padding=True)
    assert seen == [3072, 1728, 2432]
