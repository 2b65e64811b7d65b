"""The audio fine-tuning tasks on tiny random checkpoints and 44.1 kHz stereo wav files that the
tests write: the loss falls on a fixed batch, each metric equals hand-computed values on a
stub model whose outputs the test sets, the saved folder loads here and in transformers with
the same logits, and mistakes in the data are DataErrors naming the manifest and its line."""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile
import torch
import transformers
from torch import nn

import data2vec
from data2vec.audio.io import load_audio
from data2vec.training.data import DataError
from data2vec.training.tasks import TASKS
from data2vec.training.tasks_audio import build_vocabulary, case_folding
from tests.helpers import add_noise, assert_close, losses_fall

TINY_AUDIO = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
    conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2), conv_bias=False,
    num_conv_pos_embeddings=2, conv_pos_kernel_size=5, num_conv_pos_embedding_groups=4,
    hidden_dropout=0.0, activation_dropout=0.0, attention_dropout=0.0, feat_proj_dropout=0.0,
    final_dropout=0.0, layerdrop=0.0, mask_time_prob=0.0,
    classifier_proj_size=8, tdnn_dim=(16, 16, 12), tdnn_kernel=(3, 3, 1), tdnn_dilation=(1, 2, 1),
    xvector_output_dim=8,
)  # fmt: skip
RATE = 44100


def conv_frames(samples: int) -> int:
    """Frames of the tiny conv stack (kernels 10, 3, 3; strides 5, 2, 2), worked by hand."""
    for kernel, stride in ((10, 5), (3, 2), (3, 2)):
        samples = (samples - kernel) // stride + 1
    return samples


def write_checkpoint(folder, model_class=data2vec.Data2VecAudioModel, extractor=True, **config):
    """A noisy tiny checkpoint (a backbone unless said otherwise) with the default feature extractor."""
    torch.manual_seed(0)
    model = add_noise(model_class(data2vec.Data2VecAudioConfig(**{**TINY_AUDIO, **config})))
    model.save_pretrained(folder)
    if extractor:
        data2vec.Data2VecAudioFeatureExtractor().save_pretrained(folder)
    return folder


def write_wav(path, seconds=0.1, frequency=440.0, seed=0):
    """Stereo 44.1 kHz 16-bit PCM: a tone plus noise, the right channel half as loud."""
    t = np.arange(int(seconds * RATE)) / RATE
    noise = np.random.default_rng(seed).normal(0, 0.05, len(t))
    left = 0.5 * np.sin(2 * np.pi * frequency * t) + noise
    soundfile.write(path, np.stack([left, 0.5 * left], axis=1), RATE, subtype="PCM_16")
    return path


def write_manifest(path, column, rows):
    """A CSV manifest of (file name, target) rows; returns its path."""
    lines = [f"path,{column}"] + [f'{name},"{target}"' for name, target in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def inputs_only(batch):
    return {key: value for key, value in batch.items() if key != "labels"}


def assert_reloads(prepared, model, folder, class_name, batch, fields=("logits",)):
    """save -> our class and transformers' class of the same name give the trained model's outputs."""
    prepared.save(model, folder)
    model.eval()
    ours = getattr(data2vec, class_name).from_pretrained(folder)
    reference = getattr(transformers, class_name).from_pretrained(folder, attn_implementation="eager").eval()
    with torch.no_grad():
        expected = model(**inputs_only(batch))
        for loaded in (ours, reference):
            out = loaded(**inputs_only(batch))
            for field in fields:
                assert_close(getattr(out, field), getattr(expected, field), f"{class_name}.{field}")


class Stub(nn.Module):
    """A model whose outputs the test sets, one per call; it records its inputs."""

    def __init__(self, outputs, **modules):
        super().__init__()
        self.outputs = list(outputs)
        self.calls = []
        for name, module in modules.items():
            setattr(self, name, module)

    def forward(self, **inputs):
        self.calls.append(inputs)
        return self.outputs.pop(0)


def test_the_four_audio_tasks_are_registered():
    expected = {
        "speech-recognition": ("AutoModelForCTC", "wer", False),
        "audio-classification": ("AutoModelForAudioClassification", "accuracy", True),
        "audio-frame-classification": ("AutoModelForAudioFrameClassification", "accuracy", True),
        "speaker-verification": ("AutoModelForAudioXVector", "eer", False),
    }
    for name, (auto_class, metric, greater) in expected.items():
        task = TASKS[name]
        assert (task.family, task.auto_class, task.metric, task.greater_is_better) == (
            "data2vec-audio", auto_class, metric, greater,
        )  # fmt: skip


# ---------------------------------------------------------------------------- speech recognition


def speech_data(tmp_path, transcripts=("ab ba", "cab")):
    for index in range(len(transcripts)):
        write_wav(tmp_path / f"u{index}.wav", seconds=0.08 + 0.03 * index, frequency=300 + 200 * index, seed=index)
    rows = [(f"u{index}.wav", text) for index, text in enumerate(transcripts)]
    return write_manifest(tmp_path / "train.csv", "text", rows)


def test_speech_recognition_builds_the_vocabulary_trains_and_saves(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "backbone")
    task = TASKS["speech-recognition"]
    manifest = speech_data(tmp_path, ("Ab  ba ", "cab!"))
    examples = task.read(manifest, {})
    with pytest.warns(UserWarning, match="built a vocabulary of 10 tokens"):
        prepared = task.prepare(checkpoint, examples, {})

    # the wav2vec 2.0 layout, characters as written (the vocabulary has both cases: no folding)
    expected = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "!": 5, "A": 6, "a": 7, "b": 8, "c": 9}
    assert prepared.processor.tokenizer.get_vocab() == expected
    assert build_vocabulary(["Ab  ba ", "cab!"]) == expected
    model = prepared.model
    assert isinstance(model, data2vec.Data2VecAudioForCTC)
    assert (model.config.vocab_size, model.config.pad_token_id, model.lm_head.out_features) == (10, 0, 10)

    batch = prepared.collate(examples)
    # "Ab ba" (spaces normalised) and "cab!", padded with -100
    assert batch["labels"].tolist() == [[6, 8, 4, 8, 7], [9, 7, 8, 5, -100]]
    assert batch["attention_mask"].shape == batch["input_values"].shape
    lengths = [len(load_audio(tmp_path / f"u{i}.wav")) for i in range(2)]
    assert batch["attention_mask"].sum(-1).tolist() == lengths

    losses = losses_fall(model, batch)
    assert losses[-1] < losses[0]
    assert_reloads(prepared, model, tmp_path / "out", "Data2VecAudioForCTC", batch)
    # the processor files: ours and the reference tokenizer read the same vocabulary
    processor = data2vec.AutoProcessor.from_pretrained(tmp_path / "out")
    assert processor.tokenizer.get_vocab() == expected
    assert transformers.Wav2Vec2CTCTokenizer.from_pretrained(tmp_path / "out").get_vocab() == expected


@pytest.mark.parametrize(
    "vocabulary,transcript,expected_ids",
    [
        # the official checkpoints' layout: upper-case letters only -> transcripts upper-cased
        (["<pad>", "<s>", "</s>", "<unk>", "|", "E", "H", "L", "O"], "Hello hole", [6, 5, 7, 7, 8, 4, 6, 8, 7, 5]),
        # lower-case letters only -> transcripts lower-cased; unknown characters become <unk>
        (["<pad>", "<s>", "</s>", "<unk>", "|", "e", "h", "l", "o"], "HELLO x", [6, 5, 7, 7, 8, 4, 3]),
    ],
)
def test_speech_recognition_uses_the_checkpoint_vocabulary_in_its_case(tmp_path, vocabulary, transcript, expected_ids):
    checkpoint = write_checkpoint(tmp_path / "ctc", data2vec.Data2VecAudioForCTC, vocab_size=len(vocabulary))
    (checkpoint / "vocab.json").write_text(json.dumps({token: index for index, token in enumerate(vocabulary)}))
    write_wav(tmp_path / "a.wav", seconds=0.1)
    manifest = write_manifest(tmp_path / "train.csv", "text", [("a.wav", transcript)])
    task = TASKS["speech-recognition"]
    examples = task.read(manifest, {})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prepared = task.prepare(checkpoint, examples, {})
    messages = [str(w.message) for w in caught]
    assert not any("built a vocabulary" in message for message in messages)
    assert any("<unk>" in message for message in messages) == ("x" in transcript)
    assert prepared.collate(examples)["labels"].tolist() == [expected_ids]
    assert prepared.model.config.vocab_size == len(vocabulary)


def test_case_folding_rule():
    assert case_folding(["<pad>", "|", "A", "B", "'"])("it's") == "IT'S"
    assert case_folding(["<pad>", "|", "a", "é"])("ÉTÉ") == "été"
    assert case_folding(["<pad>", "|", "a", "B"])("aB c") == "aB c"
    assert case_folding(["<pad>", "|", "1", "?"])("Ab") == "Ab"


def test_speech_recognition_wer_and_cer_of_greedy_decoding(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "backbone")
    task = TASKS["speech-recognition"]
    examples = task.read(speech_data(tmp_path), {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = task.prepare(checkpoint, examples, {})
    vocab = prepared.processor.tokenizer.get_vocab()
    assert vocab == {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, "a": 5, "b": 6, "c": 7}
    # best paths: row 0 "a a _ b | b _ b a _" -> "ab bba" (b _ b keeps both b's); row 1 "c a b" then
    # frames beyond the utterance's real ones (padding), which must not be decoded
    paths = [[5, 5, 0, 6, 4, 6, 0, 6, 5, 0], [7, 5, 6, 0, 0, 0]]
    frames = [conv_frames(len(load_audio(tmp_path / f"u{i}.wav"))) for i in range(2)]
    logits = torch.full((2, max(frames), len(vocab)), -5.0)
    logits[:, :, 0] = 5.0  # blank everywhere ...
    for row, path in enumerate(paths):
        logits[row, torch.arange(len(path)), torch.tensor(path)] = 10.0  # ... except on the paths
    assert frames[0] < frames[1]
    logits[0, frames[0] :, 7] = 20.0  # "c" on the padding frames of row 0
    stub = Stub([SimpleNamespace(logits=logits)])
    scores = prepared.evaluate(stub, examples)
    # references "ab ba" (2 words, 5 characters) and "cab" (1 word, 3 characters); hypotheses
    # "ab bba" (1 word substituted, 1 character inserted) and "cab"
    assert scores == pytest.approx({"wer": 1 / 3, "cer": 1 / 8})
    assert len(stub.calls) == 1 and "labels" not in stub.calls[0]


def test_speech_recognition_leaves_out_utterances_longer_than_max_seconds(tmp_path):
    write_wav(tmp_path / "short.wav", seconds=0.05)
    write_wav(tmp_path / "long.wav", seconds=0.3)
    manifest = write_manifest(tmp_path / "train.csv", "text", [("short.wav", "a"), ("long.wav", "b")])
    with pytest.warns(UserWarning, match="1 of 2 utterances are longer than max_seconds=0.2"):
        examples = TASKS["speech-recognition"].read(manifest, {"max_seconds": 0.2})
    assert [example["path"].name for example in examples] == ["short.wav"]


def test_speech_recognition_refuses_a_transcript_longer_than_its_audio(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "backbone")
    write_wav(tmp_path / "a.wav", seconds=0.01)  # 160 samples at 16 kHz
    frames = conv_frames(len(load_audio(tmp_path / "a.wav")))
    assert frames == 7
    # 7 characters, and the repeated "a" needs a blank between: 8 frames
    manifest = write_manifest(tmp_path / "train.csv", "text", [("a.wav", "aabcabc")])
    task = TASKS["speech-recognition"]
    examples = task.read(manifest, {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = task.prepare(checkpoint, examples, {})
    with pytest.raises(DataError, match=r"train\.csv, line 2: the transcript needs 8 CTC frames but the audio gives 7"):
        prepared.collate(examples)


# ---------------------------------------------------------------------------- audio classification


def classification_data(tmp_path, labels=("dog", "cat", "bird", "cat"), name="train.csv", column="label"):
    rows = []
    for index, label in enumerate(labels):
        write_wav(tmp_path / f"{name}{index}.wav", seconds=0.06 + 0.02 * index, frequency=200 + 300 * index, seed=index)
        rows.append((f"{name}{index}.wav", label))
    return write_manifest(tmp_path / name, column, rows)


def test_audio_classification_trains_scores_and_saves(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "backbone")
    task = TASKS["audio-classification"]
    examples = task.read(classification_data(tmp_path), {})
    with pytest.warns(UserWarning, match="a new head is trained"):
        prepared = task.prepare(checkpoint, examples, {})
    model = prepared.model
    assert model.config.id2label == {0: "bird", 1: "cat", 2: "dog"}
    batch = prepared.collate(examples)
    assert batch["labels"].tolist() == [2, 1, 0, 1]
    assert "attention_mask" in batch
    losses = losses_fall(model, batch)
    assert losses[-1] < losses[0]
    assert_reloads(prepared, model, tmp_path / "out", "Data2VecAudioForSequenceClassification", batch)
    assert json.loads((tmp_path / "out" / "preprocessor_config.json").read_text())["sampling_rate"] == 16000

    # accuracy: the stub predicts dog, cat, cat, cat for dog, cat, bird, cat -> 3 of 4
    logits = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 2.0, 1.0]])
    stub = Stub([SimpleNamespace(logits=logits)])
    assert prepared.evaluate(stub, examples) == {"accuracy": 0.75}
    assert "labels" not in stub.calls[0] and stub.calls[0]["input_values"].shape[0] == 4


def test_audio_classification_evaluates_in_batches_of_the_option(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "backbone")
    task = TASKS["audio-classification"]
    examples = task.read(classification_data(tmp_path), {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = task.prepare(checkpoint, examples, {"eval_batch_size": 3})
    logits = [torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), torch.tensor([[0.0, 1.0, 0.0]])]
    stub = Stub([SimpleNamespace(logits=value) for value in logits])
    # predictions dog, bird, bird, cat for dog, cat, bird, cat -> 3 of 4
    assert prepared.evaluate(stub, examples) == {"accuracy": 0.75}
    assert [call["input_values"].shape[0] for call in stub.calls] == [3, 1]


def test_audio_classification_keeps_the_head_of_a_checkpoint_with_the_same_labels(tmp_path):
    id2label = {0: "bird", 1: "cat", 2: "dog"}
    classifier = data2vec.Data2VecAudioForSequenceClassification
    checkpoint = write_checkpoint(tmp_path / "classifier", classifier, id2label=id2label)
    saved = data2vec.Data2VecAudioForSequenceClassification.from_pretrained(checkpoint)
    task = TASKS["audio-classification"]
    examples = task.read(classification_data(tmp_path), {})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "new head" warning
        prepared = task.prepare(checkpoint, examples, {})
    assert torch.equal(prepared.model.classifier.weight, saved.classifier.weight)


def test_audio_classification_crops_to_max_seconds_and_follows_return_attention_mask(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "backbone", extractor=False)
    data2vec.Data2VecAudioFeatureExtractor(return_attention_mask=False).save_pretrained(checkpoint)
    task = TASKS["audio-classification"]
    examples = task.read(classification_data(tmp_path), {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = task.prepare(checkpoint, examples, {"max_seconds": 0.07})
    batch = prepared.collate(examples)
    assert "attention_mask" not in batch
    # 0.06 s (960 samples) stays, the others are cut to 0.07 s = 1120 samples
    assert batch["input_values"].shape == (4, 1120)
    assert torch.all(batch["input_values"][0, 960:] == 0)


def test_audio_classification_data_errors_name_the_manifest_and_line(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "backbone")
    task = TASKS["audio-classification"]
    examples = task.read(classification_data(tmp_path), {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = task.prepare(checkpoint, examples, {})
    eval_examples = task.read(classification_data(tmp_path, ("cat", "fish"), name="eval.csv"), {})
    for call in (prepared.check, prepared.collate, lambda rows: prepared.evaluate(prepared.model, rows)):
        with pytest.raises(DataError, match=r"eval\.csv, line 3: label 'fish' is not one of the 3 labels"):
            call(eval_examples)

    (tmp_path / "broken.wav").write_bytes(b"RIFF not really a wav file")
    broken = task.read(write_manifest(tmp_path / "broken.csv", "label", [("broken.wav", "cat")]), {})
    with pytest.raises(DataError, match=r"broken\.csv, line 2: .*broken\.wav.*could not be decoded"):
        prepared.collate(broken)


def test_a_checkpoint_without_feature_extractor_gets_the_default_one(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "backbone", extractor=False)
    task = TASKS["audio-classification"]
    examples = task.read(classification_data(tmp_path), {})
    with pytest.warns(UserWarning, match="no preprocessor_config.json"):
        prepared = task.prepare(checkpoint, examples, {"sampling_rate": 8000})
    assert prepared.processor.sampling_rate == 8000 and prepared.processor.return_attention_mask
    prepared.save(prepared.model, tmp_path / "out")
    assert data2vec.AutoProcessor.from_pretrained(tmp_path / "out").sampling_rate == 8000


# ---------------------------------------------------------------------------- frame classification


def frame_data(tmp_path, extra=(0, 1, -1)):
    """Three utterances; utterance i has conv_frames + extra[i] frame labels: 'a' for its first
    10 frames, then 'b' (the last one 'c' for the third)."""
    rows, counts = [], []
    for index, offset in enumerate(extra):
        path = write_wav(tmp_path / f"f{index}.wav", seconds=0.03 + 0.01 * index, seed=index)
        frames = conv_frames(len(load_audio(path)))
        names = ["a"] * 10 + ["b"] * (frames + offset - 10)
        if index == 2:
            names[-1] = "c"
        rows.append((path.name, " ".join(names)))
        counts.append(frames)
    return write_manifest(tmp_path / "frames.csv", "labels", rows), counts


def test_audio_frame_classification_trains_scores_and_saves(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "backbone")
    task = TASKS["audio-frame-classification"]
    manifest, frames = frame_data(tmp_path)
    examples = task.read(manifest, {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = task.prepare(checkpoint, examples, {})
    model = prepared.model
    assert model.config.id2label == {0: "a", 1: "b", 2: "c"}
    batch = prepared.collate(examples)
    labels = batch["labels"]  # (batch, frames, classes) one-hot
    assert labels.shape == (3, max(frames), 3)
    for row, count in enumerate(frames):
        assert labels[row, :count].sum().item() == count and labels[row, count:].sum().item() == 0
        assert labels[row, :10].argmax(-1).tolist() == [0] * 10
    # one label too many: the last dropped; one too few: the last ("c") repeated
    assert labels[1, frames[1] - 1].argmax().item() == 1
    assert labels[2, frames[2] - 2 : frames[2]].argmax(-1).tolist() == [2, 2]
    losses = losses_fall(model, batch)
    assert losses[-1] < losses[0]
    assert_reloads(prepared, model, tmp_path / "out", "Data2VecAudioForAudioFrameClassification", batch)

    # frame accuracy over real frames only: the stub predicts "a" on every frame, padding included
    logits = torch.zeros(3, max(frames), 3)
    logits[..., 0] = 1.0
    scores = prepared.evaluate(Stub([SimpleNamespace(logits=logits)]), examples)
    assert scores == {"accuracy": pytest.approx(30 / sum(frames))}


def test_audio_frame_classification_refuses_a_wrong_frame_count(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "backbone")
    task = TASKS["audio-frame-classification"]
    manifest, frames = frame_data(tmp_path, extra=(0, 2, 0))
    examples = task.read(manifest, {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = task.prepare(checkpoint, examples, {})
    message = rf"frames\.csv, line 3: {frames[1] + 2} frame labels for {frames[1]} model frames"
    with pytest.raises(DataError, match=message):
        prepared.collate(examples)


def test_audio_frame_classification_crops_labels_with_the_audio(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "backbone")
    task = TASKS["audio-frame-classification"]
    manifest, _ = frame_data(tmp_path)
    examples = task.read(manifest, {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = task.prepare(checkpoint, examples, {"max_seconds": 0.02})
    batch = prepared.collate(examples)
    kept = conv_frames(320)  # 0.02 s at 16 kHz
    assert batch["input_values"].shape == (3, 320)
    assert batch["labels"].shape == (3, kept, 3)
    assert batch["labels"].sum().item() == 3 * kept


# ---------------------------------------------------------------------------- speaker verification


def test_speaker_verification_trains_scores_and_saves(tmp_path):
    # an x-vector checkpoint of these speakers, its head noisy like the rest: a freshly initialised
    # head starts with outputs near 1e-7, whose direction (all the AM-softmax reads) is noise
    id2label = {0: "ann", 1: "bob", 2: "sue"}
    checkpoint = write_checkpoint(tmp_path / "xvector", data2vec.Data2VecAudioForXVector, id2label=id2label)
    task = TASKS["speaker-verification"]
    speakers = ("sue", "bob", "sue", "ann", "bob", "ann")
    examples = task.read(classification_data(tmp_path, speakers), {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = task.prepare(checkpoint, examples, {})
    model = prepared.model
    assert model.config.id2label == id2label
    batch = prepared.collate(examples)
    assert batch["labels"].tolist() == [2, 1, 2, 0, 1, 0]
    losses = losses_fall(model, batch)
    assert losses[-1] < losses[0]
    assert_reloads(prepared, model, tmp_path / "out", "Data2VecAudioForXVector", batch, ("logits", "embeddings"))
    scores = prepared.evaluate(model, examples)
    assert set(scores) == {"eer", "accuracy"} and 0 <= scores["eer"] <= 1


def test_speaker_verification_equal_error_rate_and_accuracy(tmp_path):
    checkpoint = write_checkpoint(tmp_path / "backbone")
    task = TASKS["speaker-verification"]
    train = task.read(classification_data(tmp_path, ("a", "b", "a", "b")), {})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = task.prepare(checkpoint, train, {})
    evaluation = task.read(classification_data(tmp_path, ("a", "a", "b"), name="eval.csv"), {})
    # embeddings a1 = (1, 0), a2 = (0, 1), b1 = (0.8, -0.6): trials a1-a2 (same) 0, a1-b1 0.8,
    # a2-b1 -0.6. Ranked: impostor 0.8 > genuine 0 > impostor -0.6. A threshold in (0, 0.8]
    # accepts one of the two impostors and rejects the genuine trial (FAR 1/2, FRR 1), one in
    # (-0.6, 0] accepts the genuine trial too (FAR 1/2, FRR 0): FAR = FRR at 1/2 -> EER 0.5
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.8, -0.6]])
    # AM-softmax weights: speaker a (id 0) along x, b (id 1) along y -> predictions a, b, a: 1 of 3 right
    head = SimpleNamespace(weight=torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    output = SimpleNamespace(embeddings=embeddings, logits=embeddings)
    scores = prepared.evaluate(Stub([output], am_softmax=head), evaluation)
    assert scores == pytest.approx({"eer": 0.5, "accuracy": 1 / 3})

    # speakers unseen in training: no accuracy, and no error
    unseen = task.read(classification_data(tmp_path, ("a", "a", "zed"), name="unseen.csv"), {})
    assert prepared.evaluate(Stub([output], am_softmax=head), unseen) == pytest.approx({"eer": 0.5})

    single = task.read(classification_data(tmp_path, ("a", "b"), name="single.csv"), {})
    with pytest.raises(DataError, match=r"single\.csv: speaker verification needs utterances of at least two speakers"):
        prepared.check(single)
