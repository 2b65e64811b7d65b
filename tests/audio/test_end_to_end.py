"""A real audio file, made here, goes through the whole audio path: soundfile -> mono 16 kHz
-> feature extractor -> Data2VecAudioForCTC -> CTC decoding into a string; the same logits as
the reference model on the same folder."""

from __future__ import annotations

import json

import numpy as np
import soundfile
import torch
import transformers

import data2vec
from data2vec.audio.io import load_audio
from tests.helpers import assert_close, reference_model

VOCAB = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "E": 5, "T": 6, "A": 7, "O": 8, "N": 9}
TINY_AUDIO = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
    conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2), conv_bias=False,
    num_conv_pos_embeddings=2, conv_pos_kernel_size=5, num_conv_pos_embedding_groups=4,
    vocab_size=len(VOCAB), pad_token_id=0, mask_time_prob=0.0,
)


def sine_sweep(path, seconds=0.5, rate=44100):
    """Stereo sweep from 200 Hz to 4 kHz; the right channel is half as loud."""
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * (200 * t + (4000 - 200) / (2 * seconds) * t**2)
    left = 0.5 * np.sin(phase)
    soundfile.write(path, np.stack([left, 0.5 * left], axis=1), rate, subtype="PCM_16")
    return len(t)


def test_audio_file_to_transcript(tmp_path):
    samples = sine_sweep(tmp_path / "sweep.wav")
    waveform = load_audio(tmp_path / "sweep.wav", sampling_rate=16000)
    assert waveform.ndim == 1 and waveform.dtype == np.float32
    assert abs(len(waveform) - samples * 16000 / 44100) <= 2

    config = transformers.Data2VecAudioConfig(**TINY_AUDIO)
    ref = reference_model(transformers.Data2VecAudioForCTC, config, tmp_path / "model")
    (tmp_path / "model" / "vocab.json").write_text(json.dumps(VOCAB))
    model = data2vec.Data2VecAudioForCTC.from_pretrained(tmp_path / "model")
    extractor = data2vec.Data2VecAudioFeatureExtractor()
    tokenizer = data2vec.Data2VecAudioCTCTokenizer.from_pretrained(tmp_path / "model")

    # an untrained model: keep <s>, </s>, <unk> out of the argmax path so the text is readable
    with torch.no_grad():
        for head in (model.lm_head, ref.lm_head):
            head.bias[1:4] = -1e4
    # a batch: the sweep and its first half, padded
    features = extractor([waveform, waveform[: len(waveform) // 2]], sampling_rate=16000, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(features["input_values"], attention_mask=features["attention_mask"]).logits
        ref_logits = ref(features["input_values"], attention_mask=features["attention_mask"]).logits
    assert_close(logits, ref_logits, "logits")
    texts = tokenizer.batch_decode(logits.argmax(-1))
    assert len(texts) == 2 and all(isinstance(text, str) for text in texts)
    assert set("".join(texts)) <= set("ETAON ")
    # the decoded string is the CTC collapse of the argmax path: repeats merged, blanks dropped
    path = logits[0].argmax(-1).tolist()
    collapsed = [token for index, token in enumerate(path) if index == 0 or token != path[index - 1]]
    inverse = {index: token for token, index in VOCAB.items()}
    expected = "".join(" " if inverse[t] == "|" else inverse[t] for t in collapsed if t > 3).strip()
    assert " ".join(texts[0].split()) == " ".join(expected.split())
    # the reference tokenizer reads the same text from the same ids
    ref_tokenizer = transformers.Wav2Vec2CTCTokenizer(str(tmp_path / "model" / "vocab.json"))
    assert texts[0] == ref_tokenizer.decode(logits[0].argmax(-1).tolist())
