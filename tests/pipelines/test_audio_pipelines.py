"""The four audio pipelines on tiny random checkpoints and 44.1 kHz stereo wav files that the
tests write: each result equals the model called directly on the same waveform (and the
reference library's pipeline where it has the task), batches give the results of single
inputs in input order, chunked speech recognition stitches to the unchunked transcript, and
the command prints the same results as JSON."""

from __future__ import annotations

import itertools
import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch
import transformers

import data2vec
from data2vec.audio.io import load_audio
from data2vec.pipelines import pipeline
from data2vec.pipelines.audio import _plain
from data2vec.training.metrics import character_error_rate
from tests.helpers import assert_close
from tests.training.test_tasks_audio import RATE, write_checkpoint, write_wav

MODEL_RATE = 16000  # the default feature extractor's rate
# the tiny conv stack's strides (5, 2, 2): 20 samples per frame, 1.25 ms at 16 kHz
SECONDS_PER_FRAME = 20 / MODEL_RATE
CTC_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "|", "a", "b", "c", "d", "e", "f", "g"]
CLASSES = ["dog", "cat", "bird", "car", "rain", "wind"]
FRAME_CLASSES = ["silence", "speech", "music"]
SPEAKERS = ["ann", "bob"]
# the chunked transcript of the long file may differ from the whole file's by this character
# error rate (see test_chunked_recognition_of_a_long_file_matches_the_whole_file)
STITCHING_TOLERANCE = 0.01


def write_tones(path, frequencies, seconds=0.1, seed=0):
    """Consecutive write_wav tones (44.1 kHz stereo), one per frequency, as one file."""
    parts = []
    for index, frequency in enumerate(frequencies):
        write_wav(path, seconds=seconds, frequency=frequency, seed=seed + index)
        parts.append(soundfile.read(path)[0])
    soundfile.write(path, np.concatenate(parts), RATE, subtype="PCM_16")
    return path


def labels(names):
    return {index: name for index, name in enumerate(names)}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("audio_pipelines")


@pytest.fixture(scope="module")
def wavs(folder):
    """Three 44.1 kHz stereo files of different lengths (0.1, 0.2 and 0.3 s), of 2, 4 and 6 tones."""
    (folder / "wavs").mkdir()
    return [
        write_tones(folder / "wavs" / f"{index}.wav", [300 + 250 * index, 900 - 150 * index] * (index + 1), 0.05, index)
        for index in range(3)
    ]


@pytest.fixture(scope="module")
def ctc(folder):
    """A CTC checkpoint with a character vocabulary; <s>, </s> and <unk> made unlikely and the word
    delimiter likelier, so that transcripts are words of letters."""
    path = write_checkpoint(folder / "ctc", data2vec.Data2VecAudioForCTC, vocab_size=len(CTC_TOKENS))
    model = data2vec.Data2VecAudioForCTC.from_pretrained(path)
    with torch.no_grad():
        model.lm_head.bias[1:4] -= 4.0
        model.lm_head.bias[4] += 1.0
    model.save_pretrained(path)
    data2vec.Data2VecAudioCTCTokenizer({token: index for index, token in enumerate(CTC_TOKENS)}).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def classifier(folder):
    return write_checkpoint(
        folder / "classifier", data2vec.Data2VecAudioForSequenceClassification, id2label=labels(CLASSES)
    )


@pytest.fixture(scope="module")
def framer(folder):
    return write_checkpoint(
        folder / "frames", data2vec.Data2VecAudioForAudioFrameClassification, id2label=labels(FRAME_CLASSES)
    )


@pytest.fixture(scope="module")
def xvector(folder):
    return write_checkpoint(folder / "xvector", data2vec.Data2VecAudioForXVector, id2label=labels(SPEAKERS))


def model_outputs(model_class, checkpoint, waveform):
    """The model called directly on one 16 kHz waveform, normalised by the feature extractor."""
    model = model_class.from_pretrained(checkpoint).eval()
    features = data2vec.Data2VecAudioFeatureExtractor.from_pretrained(checkpoint)(
        waveform, sampling_rate=MODEL_RATE, return_tensors="pt"
    )
    with torch.no_grad():
        return model(**features)


def start_command(task, checkpoint, *arguments):
    """``data2vec <task> --model checkpoint --json ...`` as a user runs it, in the background."""
    command = [sys.executable, "-m", "data2vec.cli", task, "--model", str(checkpoint), "--json", "--no-progress"]
    return subprocess.Popen([*command, *map(str, arguments)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def commands(ctc, classifier, framer, xvector, wavs):
    """The command of each task on the test files, all four started at once (each is a new Python
    process, ~3 s) when the first command test asks; each test reads its command's JSON lines."""
    arguments = {
        "speech-recognition": (ctc, "--return-timestamps", "word", "--chunk-length-s", "0.1", *wavs),
        "audio-classification": (classifier, "--top-k", "3", wavs[0].parent),
        "audio-frame-classification": (framer, "--return-frames", wavs[2], wavs[0]),
        "speaker-verification": (xvector, "--reference", wavs[0], "--threshold", "0.9", *wavs[1:]),
    }
    processes = {task: start_command(task, *task_arguments) for task, task_arguments in arguments.items()}

    def lines(task):
        output, errors = processes[task].communicate(timeout=120)
        assert processes[task].returncode == 0, errors
        return [json.loads(line) for line in output.splitlines()]

    yield lines
    for process in processes.values():
        if process.poll() is None:
            process.kill()
            process.communicate()


def assert_pieces_unchanged_by_padding(pipe, items, **options):
    """The outputs of each piece in one padded batch equal its outputs alone (real frames)."""
    options = pipe.check_options(options)
    pieces = [piece for item in items for piece in pipe.preprocess(item, **options)]
    assert len({pipe.length(piece) for piece in pieces}) > 1, "the pieces must differ in length"
    with torch.inference_mode():
        together = pipe.unbatch(pipe.forward(pipe.to_device(pipe.collate(pieces))), pieces)
        for piece, output in zip(pieces, together):
            alone = pipe.unbatch(pipe.forward(pipe.to_device(pipe.collate([piece]))), [piece])[0]
            assert_close(output, alone, "padded piece")


def one_line_error(error_info):
    return "\n" not in str(error_info.value)


# ---------------------------------------------------------------------------- speech recognition


def test_speech_recognition_equals_the_model_and_the_reference(ctc, wavs):
    pipe = pipeline("speech-recognition", model=ctc)
    tokenizer = data2vec.Data2VecAudioCTCTokenizer.from_pretrained(ctc)
    waveform = load_audio(wavs[2], sampling_rate=MODEL_RATE)
    ids = model_outputs(data2vec.Data2VecAudioForCTC, ctc, waveform).logits[0].argmax(-1)
    expected = tokenizer.decode(ids)
    assert len(expected.split()) >= 5 and "<" not in expected  # words of letters, for the checks to bite
    assert pipe(wavs[2]) == {"text": expected}

    reference = transformers.pipeline("automatic-speech-recognition", model=str(ctc))
    assert pipe(waveform) == reference(waveform)
    for kind in ("word", "char"):
        ours, theirs = pipe(waveform, return_timestamps=kind), reference(waveform, return_timestamps=kind)
        assert ours["text"] == theirs["text"]
        assert [chunk["text"] for chunk in ours["chunks"]] == [chunk["text"] for chunk in theirs["chunks"]]
        ours_times = np.array([chunk["timestamp"] for chunk in ours["chunks"]])
        assert np.allclose(ours_times, np.array([chunk["timestamp"] for chunk in theirs["chunks"]]), atol=1e-9)
    # chunked the same way (0.1 s chunks of 0.3 s of audio: 4 chunks), the same stitched text
    batched = pipeline("speech-recognition", model=ctc, batch_size=8)
    for options in ({"chunk_length_s": 0.1}, {"chunk_length_s": 0.1, "stride_length_s": (0.03, 0.01)}):
        assert len(pipe.preprocess(waveform, **pipe.check_options(options))) >= 4
        assert batched(waveform, **options)["text"] == reference(waveform, **options)["text"]


def test_speech_recognition_batches_give_the_single_results_in_order(ctc, wavs):
    stereo, rate = soundfile.read(wavs[1])
    items = [
        str(wavs[2]),
        {"raw": stereo.mean(axis=1), "sampling_rate": rate},  # resampled as load_audio resamples the file
        load_audio(wavs[0], sampling_rate=MODEL_RATE),
        wavs[1],
    ]
    single = pipeline("speech-recognition", model=ctc, batch_size=1)
    batched = pipeline("speech-recognition", model=ctc, batch_size=3)
    for options in ({}, {"chunk_length_s": 0.08, "return_timestamps": "word"}):
        expected = [single(item, **options) for item in items]
        assert batched(items, **options) == expected
    assert expected[1] == expected[3]  # the dict at 44.1 kHz reads as its file
    assert len({result["text"] for result in expected}) == 3
    assert_pieces_unchanged_by_padding(batched, items[:3], chunk_length_s=0.08)


def test_chunked_recognition_of_a_long_file_matches_the_whole_file(ctc, tmp_path):
    # a 0.5 s segment (five tones) repeated 8 times: 4 s, 3200 frames; 1 s chunks with 1/6 s strides
    segment = write_tones(tmp_path / "segment.wav", [360, 1210, 520, 940, 1480], 0.1, seed=0)
    samples, rate = soundfile.read(segment)
    long_file = tmp_path / "long.wav"
    soundfile.write(long_file, np.tile(samples, (8, 1)), rate, subtype="PCM_16")
    pipe = pipeline("speech-recognition", model=ctc, batch_size=4)
    whole = pipe(long_file)["text"]
    chunked = pipe(long_file, chunk_length_s=1.0)["text"]
    assert len(pipe.preprocess(str(long_file), **pipe.check_options({"chunk_length_s": 1.0}))) == 6
    assert len(whole) > 1000
    # The tiny random model attends over the whole input: a chunk sees less context than the
    # whole file, so its logits differ a little and some argmax frames flip. Measured on 24 such
    # files (five random tones repeated): CER 0.12 % on average, 0.60 % at most, 0 on 10 of them;
    # 0.17 % on this one (2 of 1206 characters). Joining the chunks without dropping their
    # strided edges (the overlaps twice) gives 41 % here.
    assert character_error_rate([whole], [chunked]) <= STITCHING_TOLERANCE


def test_chunks_tile_the_recording(ctc):
    pipe = pipeline("speech-recognition", model=ctc)
    for total in range(40, 1200, 37):
        for chunk, stride in ((0.01, None), (0.0125, (0.0025, 0.00125)), (0.005, 0)):
            bounds = pipe.chunk_bounds(total, chunk, stride)
            assert bounds[0][2] == 0 and bounds[-1][3] == total
            assert all(previous[3] == following[2] for previous, following in itertools.pairwise(bounds))
            for start, end, keep_start, keep_end in bounds:
                assert 0 <= start <= keep_start < keep_end <= end <= total and start % 20 == 0
                assert end - start >= pipe.minimum_samples  # a short last chunk starts earlier
                assert end - start <= round(chunk * MODEL_RATE)


def test_word_timestamps_are_ordered_within_the_file_and_spell_the_text(ctc, wavs):
    pipe = pipeline("speech-recognition", model=ctc)
    duration = soundfile.info(wavs[2]).duration
    for options in ({}, {"chunk_length_s": 0.1}):
        result = pipe(wavs[2], return_timestamps="word", **options)
        words = [chunk["text"] for chunk in result["chunks"]]
        assert words == result["text"].split() and len(words) >= 5
        times = [time for chunk in result["chunks"] for time in chunk["timestamp"]]
        assert times == sorted(times) and all(start < end for start, end in zip(times[::2], times[1::2]))
        assert 0 <= times[0] and times[-1] <= duration
        # each time is a whole number of 1.25 ms frames
        assert all(math.isclose(t / SECONDS_PER_FRAME, round(t / SECONDS_PER_FRAME), abs_tol=1e-6) for t in times)


def test_speech_recognition_command(commands, ctc, wavs):
    lines = commands("speech-recognition")  # --return-timestamps word --chunk-length-s 0.1 on the three files
    pipe = pipeline("speech-recognition", model=ctc)
    expected = pipe([str(wav) for wav in wavs], return_timestamps="word", chunk_length_s=0.1)
    assert [line["input"] for line in lines] == [str(wav) for wav in wavs]
    assert [line["result"] for line in lines] == [_plain(result) for result in expected]


def test_speech_recognition_errors_are_one_line(ctc, classifier, tmp_path):
    for missing in ("vocab.json", "preprocessor_config.json"):
        copy = shutil.copytree(ctc, tmp_path / missing.replace(".", "_"))
        (copy / missing).unlink()
        with pytest.raises(FileNotFoundError, match=missing) as error:
            pipeline("speech-recognition", model=copy)
        assert one_line_error(error)
    pipe = pipeline("speech-recognition", model=ctc)
    # the other audio tasks need the feature extractor alone
    copy = shutil.copytree(classifier, tmp_path / "no_extractor")
    (copy / "preprocessor_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="preprocessor_config.json") as error:
        pipeline("audio-classification", model=copy)
    assert one_line_error(error)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio at all" * 10)
    short = np.zeros(30, dtype=np.float32)  # the tiny conv stack needs 40 samples
    cases = [
        (ValueError, "could not be decoded", broken, {}),
        (ValueError, "fewer than the 40", short, {}),
        (
            ValueError,
            "longer than the strides",
            np.ones(800, np.float32),
            {"chunk_length_s": 0.01, "stride_length_s": 0.005},
        ),
        (ValueError, "'word' or 'char'", np.ones(800, np.float32), {"return_timestamps": True}),
        (ValueError, "needs the waveform under 'raw'", {"array": short}, {}),
        (TypeError, "got \\['audio'\\] too", {"audio": short, "sampling_rate": 8000}, {}),
        (ValueError, "1-D mono waveform", np.ones((2, 800), np.float32), {}),
        (TypeError, "unknown option", np.ones(800, np.float32), {"top_k": 3}),
    ]
    for kind, message, item, options in cases:
        with pytest.raises(kind, match=message) as error:
            pipe(item, **options)
            pytest.fail(f"no error for {options}")
        assert one_line_error(error), str(error.value)


# ---------------------------------------------------------------------------- audio classification


def test_audio_classification_equals_the_model_and_the_reference(classifier, wavs):
    pipe = pipeline("audio-classification", model=classifier)
    waveform = load_audio(wavs[1], sampling_rate=MODEL_RATE)
    logits = model_outputs(data2vec.Data2VecAudioForSequenceClassification, classifier, waveform).logits[0]
    probabilities = logits.softmax(-1)
    order = probabilities.argsort(descending=True).tolist()
    result = pipe(wavs[1])
    assert [entry["label"] for entry in result] == [CLASSES[index] for index in order[:5]]
    assert np.allclose([entry["score"] for entry in result], probabilities[order[:5]].numpy(), atol=1e-6)

    reference = transformers.pipeline("audio-classification", model=str(classifier))
    cases = [{"top_k": 5}, {"top_k": 2}, {"top_k": None}, {"top_k": 9, "function_to_apply": "sigmoid"}]
    cases.append({"top_k": 3, "function_to_apply": "none"})
    for options in cases:
        ours, theirs = pipe(waveform, **options), reference(waveform, **options)
        assert [entry["label"] for entry in ours] == [entry["label"] for entry in theirs], options
        assert np.allclose([e["score"] for e in ours], [e["score"] for e in theirs], atol=1e-4), options
    assert len(pipe(waveform, top_k=None)) == len(CLASSES)


def test_audio_classification_batches_and_bfloat16(classifier, wavs):
    items = [wavs[0], load_audio(wavs[2], sampling_rate=MODEL_RATE), str(wavs[1]), wavs[2]]
    expected = pipeline("audio-classification", model=classifier, batch_size=1)(items, top_k=None)
    batched = pipeline("audio-classification", model=classifier, batch_size=3)
    results = batched(items, top_k=None)
    for ours, theirs in zip(results, expected, strict=True):
        assert [entry["label"] for entry in ours] == [entry["label"] for entry in theirs]
        assert np.allclose([e["score"] for e in ours], [e["score"] for e in theirs], atol=1e-4)
    assert expected[1] == expected[3] and expected[0] != expected[1]
    assert_pieces_unchanged_by_padding(batched, items[:3])

    bfloat16 = pipeline("audio-classification", model=classifier, dtype="bfloat16", batch_size=3)
    assert bfloat16.model.dtype == torch.bfloat16
    for ours, theirs in zip(bfloat16(items, top_k=None), expected):
        ours_scores = {entry["label"]: entry["score"] for entry in ours}
        assert all(abs(ours_scores[entry["label"]] - entry["score"]) < 0.02 for entry in theirs)


def test_audio_classification_command(commands, classifier, wavs):
    lines = commands("audio-classification")  # --top-k 3 on the folder of the three files
    pipe = pipeline("audio-classification", model=classifier)
    assert [line["input"] for line in lines] == [str(wav) for wav in wavs]  # the folder's files, sorted
    for line, wav in zip(lines, wavs):
        expected = pipe(wav, top_k=3)
        assert [entry["label"] for entry in line["result"]] == [entry["label"] for entry in expected]
        assert np.allclose([e["score"] for e in line["result"]], [e["score"] for e in expected], atol=1e-6)


# ---------------------------------------------------------------------------- frame classification


def test_frame_classification_segments_are_the_runs_of_the_model_labels(framer, wavs):
    pipe = pipeline("audio-frame-classification", model=framer)
    waveform = load_audio(wavs[1], sampling_rate=MODEL_RATE)
    logits = model_outputs(data2vec.Data2VecAudioForAudioFrameClassification, framer, waveform).logits[0]
    probabilities = logits.softmax(-1)  # (frames, labels)
    best = probabilities.argmax(-1).tolist()
    result = pipe(wavs[1], return_frames=True)
    assert result["frames"] == [FRAME_CLASSES[index] for index in best]
    segments = result["segments"]
    assert len(segments) > 3 and len(set(result["frames"])) > 1
    assert segments[0]["start"] == 0 and math.isclose(segments[-1]["end"], len(best) * SECONDS_PER_FRAME)
    for segment, following in itertools.pairwise(segments):
        assert segment["end"] == following["start"] and segment["label"] != following["label"]
    for segment in segments:
        first, last = round(segment["start"] / SECONDS_PER_FRAME), round(segment["end"] / SECONDS_PER_FRAME)
        label = FRAME_CLASSES.index(segment["label"])
        assert set(best[first:last]) == {label}
        assert math.isclose(segment["score"], probabilities[first:last, label].mean().item(), abs_tol=1e-6)
    assert pipe(wavs[1]) == {"segments": segments}  # return_frames off: segments only


def test_frame_classification_batches_give_the_single_results_in_order(framer, wavs):
    items = [wavs[2], wavs[0], {"array": load_audio(wavs[1], sampling_rate=8000), "sampling_rate": 8000}, wavs[1]]
    expected = pipeline("audio-frame-classification", model=framer)(items, return_frames=True)
    batched = pipeline("audio-frame-classification", model=framer, batch_size=3)
    results = batched(items, return_frames=True)
    for ours, theirs in zip(results, expected, strict=True):
        assert ours["frames"] == theirs["frames"]
        for a, b in zip(ours["segments"], theirs["segments"], strict=True):
            assert (a["label"], a["start"], a["end"]) == (b["label"], b["start"], b["end"])
            assert abs(a["score"] - b["score"]) < 1e-4
    assert_pieces_unchanged_by_padding(batched, items[:3])


def test_frame_classification_command(commands, framer, wavs):
    lines = commands("audio-frame-classification")  # --return-frames on files 2 and 0
    pipe = pipeline("audio-frame-classification", model=framer)
    for line, wav in zip(lines, [wavs[2], wavs[0]], strict=True):
        expected = pipe(wav, return_frames=True)
        assert line["input"] == str(wav) and line["result"]["frames"] == expected["frames"]
        assert [s["label"] for s in line["result"]["segments"]] == [s["label"] for s in expected["segments"]]
        assert np.allclose([s["score"] for s in line["result"]["segments"]], [s["score"] for s in expected["segments"]])


# ---------------------------------------------------------------------------- speaker verification


def test_speaker_embeddings_and_trial_scores_equal_the_model(xvector, wavs):
    pipe = pipeline("speaker-verification", model=xvector)
    embeddings = [
        model_outputs(data2vec.Data2VecAudioForXVector, xvector, load_audio(wav, sampling_rate=MODEL_RATE)).embeddings[
            0
        ]
        for wav in wavs[1:]
    ]
    result = pipe(wavs[1])
    assert set(result) == {"embedding"} and len(result["embedding"]) == 8
    assert np.allclose(result["embedding"], embeddings[0].numpy(), atol=1e-5)

    first, second = (embedding.double() for embedding in embeddings)
    cosine = (first @ second / (first.norm() * second.norm())).item()
    trial = pipe((wavs[1], wavs[2]))
    assert set(trial) == {"score", "same_speaker", "threshold"}
    assert math.isclose(trial["score"], cosine, abs_tol=1e-5) and trial["threshold"] == 0.5
    assert trial["same_speaker"] == (cosine >= 0.5)
    assert math.isclose(pipe((wavs[1], wavs[1]))["score"], 1.0, abs_tol=1e-6)
    assert pipe((wavs[1], wavs[2]), threshold=trial["score"] - 1e-9)["same_speaker"] is True
    assert pipe((wavs[1], wavs[2]), threshold=min(1.0, trial["score"] + 1e-9))["same_speaker"] is False

    items = [(wavs[0], wavs[2]), wavs[1], (wavs[2], wavs[1]), wavs[2]]
    expected = [pipe(item) for item in items]
    batched = pipeline("speaker-verification", model=xvector, batch_size=3)
    for ours, theirs in zip(batched(items), expected, strict=True):
        assert set(ours) == set(theirs)
        for key, value in theirs.items():
            assert np.allclose(ours[key], value, atol=1e-4), key
    assert math.isclose(expected[2]["score"], trial["score"], abs_tol=1e-9)  # the cosine is symmetric
    assert_pieces_unchanged_by_padding(batched, wavs)


def test_speaker_trials_embed_each_recording_once(xvector, wavs):
    """A reference scored against every file, then every pair of files: 3 recordings in 5 trials
    (10 recordings if each trial embedded its own two), with the scores of trials run alone."""
    pipe = pipeline("speaker-verification", model=xvector, batch_size=2)
    embedded = []
    forward = pipe.forward

    def counting(batch, **options):
        embedded.append(len(batch["input_values"]))
        return forward(batch, **options)

    pipe.forward = counting
    files = [str(wav) for wav in wavs]
    trials = [(file, files[0]) for file in files[1:]] + list(itertools.combinations(files, 2))
    results = pipe(trials)
    assert sum(embedded) == 3 and len(results) == 5
    alone = pipeline("speaker-verification", model=xvector)
    for trial, result in zip(trials, results, strict=True):
        assert math.isclose(result["score"], alone(trial)["score"], abs_tol=1e-6)
    # a waveform passed twice as one object is embedded once; equal copies are two recordings
    waveform = load_audio(wavs[1], sampling_rate=MODEL_RATE)
    embedded.clear()
    same, copies = pipe([(waveform, waveform), (waveform, waveform.copy())])
    assert sum(embedded) == 2 and math.isclose(same["score"], 1.0, abs_tol=1e-6)
    assert math.isclose(copies["score"], 1.0, abs_tol=1e-6)


def test_speaker_verification_command_scores_against_a_reference_or_every_pair(commands, xvector, wavs, capsys):
    pipe = pipeline("speaker-verification", model=xvector)
    lines = commands("speaker-verification")  # --reference file 0 --threshold 0.9 on files 1 and 2
    assert [line["input"] for line in lines] == [f"{wav} vs {wavs[0]}" for wav in wavs[1:]]
    for line, wav in zip(lines, wavs[1:]):
        expected = pipe((str(wav), str(wavs[0])), threshold=0.9)
        assert line["result"]["threshold"] == 0.9 and line["result"]["same_speaker"] == expected["same_speaker"]
        assert math.isclose(line["result"]["score"], expected["score"], abs_tol=1e-6)

    # without --reference every pair of INPUTs is a trial (run in this process)
    from data2vec import cli

    assert cli.main(["speaker-verification", "--model", str(xvector), "--json", "--no-progress", *map(str, wavs)]) == 0
    pairs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [pair["input"] for pair in pairs] == [f"{a} vs {b}" for a, b in [wavs[:2], wavs[::2], wavs[1:]]]
    assert math.isclose(pairs[2]["result"]["score"], pipe((str(wavs[1]), str(wavs[2])))["score"], abs_tol=1e-6)
    assert cli.main(["speaker-verification", "--model", str(xvector), str(wavs[0])]) == 2
    assert "give two or more INPUT files" in capsys.readouterr().err


def test_readable_lines_of_the_commands(ctc, classifier, framer, xvector, wavs):
    recognizer = pipeline("speech-recognition", model=ctc)
    result = recognizer(wavs[0], return_timestamps="word")
    first, *words = recognizer.describe("a.wav", recognizer.export("a.wav", result, {})).splitlines()
    assert first == f"a.wav: {result['text']}" and len(words) == len(result["chunks"])
    start, end = result["chunks"][0]["timestamp"]
    assert words[0] == f"  {start:.2f}-{end:.2f} s  {result['chunks'][0]['text']}"

    classify = pipeline("audio-classification", model=classifier)
    top = classify(wavs[0], top_k=2)
    line = f"a.wav: {top[0]['label']} ({top[0]['score']:.3f}), {top[1]['label']} ({top[1]['score']:.3f})"
    assert classify.describe("a.wav", top) == line

    frames = pipeline("audio-frame-classification", model=framer)
    segments = frames(wavs[0])["segments"]
    lines = frames.describe("a.wav", frames.export("a.wav", {"segments": segments}, {})).splitlines()
    segment = segments[-1]
    assert lines[0] == "a.wav:" and len(lines) == len(segments) + 1
    assert lines[-1] == f"  {segment['start']:.2f}-{segment['end']:.2f} s  {segment['label']} ({segment['score']:.3f})"

    verify = pipeline("speaker-verification", model=xvector)
    trial = verify((wavs[0], wavs[1]), threshold=0.25)
    assert verify.describe("a vs b", trial) == f"a vs b: same speaker (score {trial['score']:.3f} >= threshold 0.25)"
    trial = verify((wavs[0], wavs[1]), threshold=1.0)
    assert verify.describe("a vs b", trial) == f"a vs b: different speakers (score {trial['score']:.3f} < threshold 1)"
