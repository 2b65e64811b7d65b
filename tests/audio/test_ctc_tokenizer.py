"""Data2VecAudioCTCTokenizer against transformers.Wav2Vec2CTCTokenizer (the oracle)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from data2vec.audio.ctc_tokenizer import CTCDecoding, Data2VecAudioCTCTokenizer, offsets_to_seconds

transformers = pytest.importorskip("transformers")

# The character vocabulary of the LibriSpeech CTC checkpoints (facebook/data2vec-audio-*-960h).
LETTERS = "ETAONIHSRDLUMWCFGYPBVK'XJQZ"
VOCAB = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, **{letter: 5 + i for i, letter in enumerate(LETTERS)}}
PAD, BOS, EOS, UNK, DELIMITER = 0, 1, 2, 3, 4


def ids_of(text: str) -> list[int]:
    """Ids written out by hand from VOCAB (space -> delimiter), independent of both tokenizers."""
    return [DELIMITER if character == " " else VOCAB[character] for character in text]


H, E, L, O, W, R, D, A, S, T, I, APOSTROPHE = (VOCAB[c] for c in "HELOWRDASTI'")

# CTC-like frame sequences: repeats, blanks between repeats, doubled delimiters, leading and
# trailing blanks/delimiters, special tokens.
CTC_SEQUENCES = [
    [PAD, H, H, E, PAD, L, L, PAD, L, O, O, DELIMITER, DELIMITER, W, O, R, PAD, L, D, PAD, PAD],
    [DELIMITER, I, T, APOSTROPHE, S, PAD, DELIMITER, PAD, DELIMITER, A, DELIMITER],
    [T, T, T, PAD, E, S, S, PAD, S, T, BOS, EOS, UNK, UNK, A],
    [PAD, PAD, PAD],
    [O],
]


@pytest.fixture(scope="module")
def vocab_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vocab")
    (folder / "vocab.json").write_text(json.dumps(VOCAB))
    return folder


@pytest.fixture(scope="module")
def ours(vocab_folder):
    return Data2VecAudioCTCTokenizer.from_pretrained(vocab_folder)


@pytest.fixture(scope="module")
def theirs(vocab_folder):
    return transformers.Wav2Vec2CTCTokenizer(str(vocab_folder / "vocab.json"))


def plain(offsets):
    """Reference offsets hold numpy integers; compare as plain Python values."""
    return [{key: value if isinstance(value, str) else int(value) for key, value in item.items()} for item in offsets]


# ---------------------------------------------------------------- encoding


TRANSCRIPTS = ["HELLO WORLD", " HELLO  WORLD ", "IT'S A TEST", "A<s>B", "A <unk> B", "hello", "é?", "", "X"]


@pytest.mark.parametrize("text", TRANSCRIPTS)
def test_encoding_matches_reference(ours, theirs, text):
    mine, reference = ours(text), theirs(text)
    assert mine["input_ids"] == reference["input_ids"]
    assert mine["attention_mask"] == reference["attention_mask"]


def test_encoding_is_the_character_table(ours):
    assert ours("IT'S A TEST").input_ids == ids_of("IT'S A TEST")
    assert ours.tokenize(" HI ") == ["|", "H", "I", "|"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"padding": True},
        {"padding": "longest", "pad_to_multiple_of": 8},
        {"padding": "max_length", "max_length": 20},
        {"padding": "max_length", "max_length": 6, "truncation": True},
        {"padding": False},
    ],
)
def test_batch_encoding_matches_reference(ours, theirs, kwargs):
    texts = ["HELLO WORLD", "HI", "A LONGER TRANSCRIPT"]
    mine, reference = ours(texts, **kwargs), theirs(texts, **kwargs)
    assert mine["input_ids"] == reference["input_ids"]
    assert mine["attention_mask"] == reference["attention_mask"]


@pytest.mark.parametrize("return_tensors", ["pt", "np"])
def test_tensor_encoding_matches_reference(ours, theirs, return_tensors):
    for texts in (["HELLO WORLD", "HI"], "HELLO"):
        mine = ours(texts, padding=True, return_tensors=return_tensors)
        reference = theirs(texts, padding=True, return_tensors=return_tensors)
        for key in ("input_ids", "attention_mask"):
            assert type(mine[key]) is type(reference[key])
            assert mine[key].dtype == reference[key].dtype
            np.testing.assert_array_equal(np.asarray(mine[key]), np.asarray(reference[key]))


def test_encode_labels_pads_with_minus_100(ours, theirs):
    texts = ["HELLO WORLD", "HI", "A CAT"]
    labels = ours.encode_labels(texts)
    assert labels.dtype == torch.int64 and tuple(labels.shape) == (3, 11)
    assert labels[1].tolist() == ids_of("HI") + [-100] * 9
    # The reference's recipe: pad, then replace padding with -100 using the attention mask.
    reference = theirs(texts, padding=True, return_tensors="pt")
    expected = reference.input_ids.masked_fill(reference.attention_mask.ne(1), -100)
    torch.testing.assert_close(labels, expected)
    np.testing.assert_array_equal(ours.encode_labels("HI", return_tensors="np"), np.array([ids_of("HI")]))


# ---------------------------------------------------------------- decoding


@pytest.mark.parametrize("sequence", CTC_SEQUENCES)
@pytest.mark.parametrize("group_tokens", [True, False])
def test_decode_matches_reference(ours, theirs, sequence, group_tokens):
    assert ours.decode(sequence, group_tokens=group_tokens) == theirs.decode(sequence, group_tokens=group_tokens)


def test_decode_collapses_repeats_and_drops_blanks(ours):
    assert ours.decode(CTC_SEQUENCES[0]) == "HELLO WORLD"
    assert ours.decode([H, H, I, I, PAD, I]) == "HII"
    assert ours.decode(CTC_SEQUENCES[2]) == "TESST<s></s><unk>A"


@pytest.mark.parametrize("as_type", [list, np.array, torch.tensor, lambda ids: np.array(ids, dtype=np.int32)])
def test_decode_accepts_lists_numpy_and_torch(ours, theirs, as_type):
    sequence = CTC_SEQUENCES[1]
    assert ours.decode(as_type(sequence)) == theirs.decode(sequence) == "IT'S  A"
    assert ours.decode(W) == theirs.decode(W) == "W"


def test_skip_special_tokens_matches_reference_when_no_blank_splits_a_repeat(ours, theirs):
    sequence = [BOS, H, H, E, PAD, L, O, UNK, DELIMITER, PAD, W, EOS, PAD]
    mine, reference = ours.decode(sequence, skip_special_tokens=True), theirs.decode(sequence, skip_special_tokens=True)
    assert mine == reference == "HELO W"
    sequence = [UNK, T, T, E, PAD, S, T, BOS, DELIMITER, A, EOS, EOS]
    mine, reference = ours.decode(sequence, skip_special_tokens=True), theirs.decode(sequence, skip_special_tokens=True)
    assert mine == reference == "TEST A"


def test_skip_special_tokens_keeps_letters_separated_by_a_blank(ours):
    # The blank is dropped after collapsing, so a doubled letter survives skip_special_tokens.
    # (The reference drops the blank first and reads "HELO" here; its ASR pipeline therefore
    # decodes CTC output with skip_special_tokens=False.)
    sequence = [BOS, H, E, L, PAD, L, O, EOS]
    assert ours.decode(sequence, skip_special_tokens=True) == "HELLO"
    assert ours.decode(sequence) == "<s>HELLO</s>"


@pytest.mark.parametrize("sequence", CTC_SEQUENCES)
@pytest.mark.parametrize("group_tokens", [True, False])
def test_offsets_match_reference(ours, theirs, sequence, group_tokens):
    kwargs = dict(output_char_offsets=True, output_word_offsets=True, group_tokens=group_tokens)
    mine, reference = ours.decode(sequence, **kwargs), theirs.decode(sequence, **kwargs)
    assert isinstance(mine, CTCDecoding)
    assert mine.text == reference.text
    assert mine.char_offsets == plain(reference.char_offsets)
    assert mine.word_offsets == plain(reference.word_offsets)


def test_word_offsets_are_frame_spans(ours):
    decoded = ours.decode(CTC_SEQUENCES[0], output_word_offsets=True)
    assert decoded.char_offsets is None
    assert decoded.word_offsets == [
        {"word": "HELLO", "start_offset": 1, "end_offset": 11},
        {"word": "WORLD", "start_offset": 13, "end_offset": 19},
    ]
    only_chars = ours.decode([H, PAD, I], output_char_offsets=True)
    assert only_chars.word_offsets is None
    assert only_chars.char_offsets == [
        {"char": "H", "start_offset": 0, "end_offset": 1},
        {"char": "I", "start_offset": 2, "end_offset": 3},
    ]


def test_offsets_to_seconds():
    # data2vec-audio: conv strides (5, 2, 2, 2, 2, 2, 2) -> 320 samples per frame = 20 ms at 16 kHz.
    word = {"word": "HELLO", "start_offset": 1, "end_offset": 11}
    times = offsets_to_seconds([word], stride=320, sampling_rate=16000)
    assert times == [{"word": "HELLO", "start_offset": 1, "end_offset": 11, "start_time": 0.02, "end_time": 0.22}]
    with pytest.raises(ValueError, match="stride and sampling_rate must be positive"):
        offsets_to_seconds([], stride=0)


def test_batch_decode_matches_reference(ours, theirs):
    batch = [CTC_SEQUENCES[0], CTC_SEQUENCES[1][:10] + [PAD] * 11]  # equal lengths for arrays
    for sequences in (batch, np.array(batch), torch.tensor(batch)):
        assert ours.batch_decode(sequences) == theirs.batch_decode(batch)
    kwargs = dict(output_char_offsets=True, output_word_offsets=True)
    mine, reference = ours.batch_decode(batch, **kwargs), theirs.batch_decode(batch, **kwargs)
    assert mine.text == reference.text
    assert mine.char_offsets == [plain(offsets) for offsets in reference.char_offsets]
    assert mine.word_offsets == [plain(offsets) for offsets in reference.word_offsets]


def test_decode_from_logits_takes_the_argmax(ours, theirs):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 30, len(VOCAB), generator=generator)  # (batch, frames, vocab)
    logits[:, ::3, PAD] += 4.0  # plenty of blanks, as in real CTC output
    predicted = logits.argmax(dim=-1)
    assert ours.batch_decode(logits) == theirs.batch_decode(predicted)
    assert ours.batch_decode(logits.numpy()) == theirs.batch_decode(predicted)
    assert ours.decode(logits[1]) == theirs.decode(predicted[1])
    assert ours.decode(logits[1].to(torch.bfloat16)) == ours.decode(logits[1].to(torch.bfloat16).float().argmax(-1))


# ---------------------------------------------------------------- options


def test_do_lower_case_matches_reference(vocab_folder):
    ours = Data2VecAudioCTCTokenizer.from_pretrained(vocab_folder, do_lower_case=True)
    theirs = transformers.Wav2Vec2CTCTokenizer(str(vocab_folder / "vocab.json"), do_lower_case=True)
    for text in ("hello World", "it's <s> ok", "a <S> b"):
        assert ours(text).input_ids == theirs(text).input_ids
    kwargs = dict(output_char_offsets=True, output_word_offsets=True)
    mine, reference = ours.decode(CTC_SEQUENCES[0], **kwargs), theirs.decode(CTC_SEQUENCES[0], **kwargs)
    assert mine.text == reference.text == "hello world"
    # The reference lower-cases only the text; ours lower-cases the offsets too, so that
    # words and text agree.
    assert mine.char_offsets == [{**item, "char": item["char"].lower()} for item in plain(reference.char_offsets)]
    assert [item["word"] for item in mine.word_offsets] == ["hello", "world"]


def test_clean_up_tokenization_spaces_matches_reference(vocab_folder):
    ours = Data2VecAudioCTCTokenizer.from_pretrained(
        vocab_folder, do_lower_case=True, clean_up_tokenization_spaces=True
    )
    theirs = transformers.Wav2Vec2CTCTokenizer(
        str(vocab_folder / "vocab.json"), do_lower_case=True, clean_up_tokenization_spaces=True
    )
    sequence = ids_of("IT 'S A CAT ' S")
    assert ours.decode(sequence) == theirs.decode(sequence) == "it's a cat's"


def test_special_token_ids(ours, theirs):
    names = ("pad_token_id", "unk_token_id", "bos_token_id", "eos_token_id", "word_delimiter_token_id", "vocab_size")
    for name in names:
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.get_vocab() == theirs.get_vocab() == VOCAB
    assert len(ours) == len(theirs) == 32
    assert ours.convert_ids_to_tokens([H, 99]) == theirs.convert_ids_to_tokens([H, 99]) == ["H", "<unk>"]


def test_nested_vocabulary_with_target_lang(tmp_path):
    nested = {"eng": VOCAB, "xyz": {"<pad>": 0, "<unk>": 1, "|": 2, "Q": 3, "Ü": 4}}
    (tmp_path / "vocab.json").write_text(json.dumps(nested, ensure_ascii=False))
    ours = Data2VecAudioCTCTokenizer.from_pretrained(tmp_path, target_lang="xyz")
    theirs = transformers.Wav2Vec2CTCTokenizer(str(tmp_path / "vocab.json"), target_lang="xyz")
    assert ours("QÜ Q").input_ids == theirs("QÜ Q").input_ids == [3, 4, 2, 3]
    assert ours.decode([3, 3, 0, 3, 2, 4]) == theirs.decode([3, 3, 0, 3, 2, 4]) == "QQ Ü"
    with pytest.raises(ValueError, match="one table per language; pass target_lang"):
        Data2VecAudioCTCTokenizer.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="target_lang='fra' is not in the vocabulary"):
        Data2VecAudioCTCTokenizer.from_pretrained(tmp_path, target_lang="fra")


# ---------------------------------------------------------------- files


def test_saved_files_load_in_the_reference(tmp_path):
    ours = Data2VecAudioCTCTokenizer(VOCAB, do_lower_case=True)
    ours.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "vocab.json").read_text()) == VOCAB
    theirs = transformers.Wav2Vec2CTCTokenizer.from_pretrained(tmp_path)
    assert theirs.do_lower_case is True
    assert theirs.get_vocab() == VOCAB
    assert (theirs.pad_token, theirs.unk_token, theirs.bos_token, theirs.eos_token) == ("<pad>", "<unk>", "<s>", "</s>")
    assert theirs.word_delimiter_token == "|"
    assert theirs("hello world").input_ids == ours("hello world").input_ids
    assert theirs.decode(CTC_SEQUENCES[0]) == ours.decode(CTC_SEQUENCES[0]) == "hello world"
    auto = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert type(auto).__name__ == "Wav2Vec2CTCTokenizer"


def test_reference_files_load_in_ours(tmp_path, vocab_folder):
    theirs = transformers.Wav2Vec2CTCTokenizer(str(vocab_folder / "vocab.json"), do_lower_case=True)
    theirs.add_tokens(["<new>", "XY"])
    theirs.save_pretrained(tmp_path)
    ours = Data2VecAudioCTCTokenizer.from_pretrained(tmp_path)
    assert ours.do_lower_case is True
    assert ours.get_vocab() == theirs.get_vocab()
    for text in ("a <new> b", "A<new>B", "XYZ"):
        assert ours(text).input_ids == theirs(text).input_ids, text
    sequence = [A, 32, 33, DELIMITER, 32, PAD, 32]
    assert ours.decode(sequence) == theirs.decode(sequence)
    # ... and the added tokens survive our own save.
    ours.save_pretrained(tmp_path / "again")
    again = transformers.Wav2Vec2CTCTokenizer.from_pretrained(tmp_path / "again")
    assert again.get_vocab() == theirs.get_vocab()
    assert again("a <new> b").input_ids == theirs("a <new> b").input_ids


def test_hub_style_token_entries(tmp_path):
    # Older Hub files write tokens as serialised AddedToken dicts, and a special_tokens_map.json.
    (tmp_path / "vocab.json").write_text(json.dumps({**VOCAB, "<blank>": 32}))
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps({"unk_token": {"__type": "AddedToken", "content": "<unk>"}, "do_lower_case": False})
    )
    special_tokens_map = {"pad_token": {"content": "<blank>"}, "bos_token": "<s>"}
    (tmp_path / "special_tokens_map.json").write_text(json.dumps(special_tokens_map))
    ours = Data2VecAudioCTCTokenizer.from_pretrained(tmp_path)
    assert (ours.pad_token, ours.unk_token, ours.pad_token_id) == ("<blank>", "<unk>", 32)
    assert ours.decode([H, 32, H, PAD]) == "HH<pad>"


# ---------------------------------------------------------------- errors


def test_missing_vocabulary_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="vocab.json not found in folder"):
        Data2VecAudioCTCTokenizer.from_pretrained(tmp_path)


def test_pad_token_must_be_in_the_vocabulary():
    with pytest.raises(ValueError, match=r"pad token '<blank>' \(the CTC blank\) is not in the vocabulary"):
        Data2VecAudioCTCTokenizer(VOCAB, pad_token="<blank>")


def test_unknown_character_without_unk_token():
    tokenizer = Data2VecAudioCTCTokenizer({k: v for k, v in VOCAB.items() if k != "<unk>"}, unk_token=None)
    with pytest.raises(ValueError, match=r"'é' is not in the vocabulary and the vocabulary has no unknown token"):
        tokenizer("CAFé")


def test_bad_decode_inputs(ours):
    with pytest.raises(ValueError, match=r"floating-point values of shape \(5,\); pass integer token ids"):
        ours.decode(np.zeros(5, dtype=np.float32))
    with pytest.raises(ValueError, match=r"shape \(1, 4, 32\).*For a batch use batch_decode"):
        ours.decode(torch.zeros(1, 4, 32))
    with pytest.raises(ValueError, match=r"ids of shape \(2, 3\); expected \(frames,\)"):
        ours.decode(np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match=r"batch_decode got an array of shape \(7,\)"):
        ours.batch_decode(np.arange(7))
    with pytest.raises(ValueError, match=r"batch_decode got an array of shape \(7, 32\)"):
        ours.batch_decode(torch.zeros(7, 32))


def test_bad_encode_inputs(ours):
    with pytest.raises(ValueError, match="no transcript given"):
        ours([])
    with pytest.raises(TypeError, match="a transcript must be a str, got int"):
        ours(["HI", 3])
    with pytest.raises(ValueError, match=r"different lengths \(2 to 5 tokens\); pass padding=True"):
        ours(["HI", "HELLO"], return_tensors="pt")
    with pytest.raises(ValueError, match="padding='max_length' needs max_length"):
        ours(["HI"], padding="max_length")
