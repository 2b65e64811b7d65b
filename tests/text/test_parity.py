"""Parity of every text class with the reference implementation (transformers) on tiny random
configs: the reference saves a noisy model, ours loads it, all outputs agree within 1e-4."""

from __future__ import annotations

import pytest
import torch
import transformers

import data2vec
from tests.helpers import assert_close, reference_model

TINY = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=40,
    type_vocab_size=2,
    layer_norm_eps=1e-5,
    hidden_act="gelu",
)
PAD = 1


def padded_batch(seed: int = 0, batch: int = 3, length: int = 9):
    """Token ids with right padding of different lengths, and the matching attention mask."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, TINY["vocab_size"], (batch, length), generator=generator)
    ids[:, 0] = 0
    lengths = [length, length - 3, 4][:batch]
    mask = torch.zeros(batch, length, dtype=torch.long)
    for row, real in enumerate(lengths):
        ids[row, real - 1] = 2
        ids[row, real:] = PAD
        mask[row, :real] = 1
    token_types = torch.zeros_like(ids)
    token_types[:, length // 2 :] = 1
    return ids, mask, token_types


def compare_outputs(ours, ref, fields):
    for field in fields:
        assert_close(getattr(ours, field), getattr(ref, field), field)


HEADS = [
    ("Data2VecTextModel", {}, ["last_hidden_state", "pooler_output", "hidden_states", "attentions"]),
    ("Data2VecTextForMaskedLM", {}, ["loss", "logits", "hidden_states", "attentions"]),
    ("Data2VecTextForTokenClassification", {"num_labels": 5}, ["loss", "logits", "hidden_states", "attentions"]),
    ("Data2VecTextForQuestionAnswering", {}, ["loss", "start_logits", "end_logits", "hidden_states", "attentions"]),
]


def labels_for(name, ids, mask):
    generator = torch.Generator().manual_seed(1)
    if name == "Data2VecTextForMaskedLM":
        labels = torch.full_like(ids, -100)
        labels[:, 2:5] = ids[:, 2:5]
        return {"labels": labels}
    if name == "Data2VecTextForTokenClassification":
        labels = torch.randint(0, 5, ids.shape, generator=generator)
        return {"labels": labels.masked_fill(mask == 0, -100)}
    if name == "Data2VecTextForQuestionAnswering":
        # the last end position lies outside the sequence and is ignored by the loss
        return {"start_positions": torch.tensor([1, 2, 0]), "end_positions": torch.tensor([3, 4, 50])}
    return {}


@pytest.mark.parametrize("name,extra,fields", HEADS, ids=[h[0] for h in HEADS])
def test_heads_match_reference(tmp_path, name, extra, fields):
    config = transformers.Data2VecTextConfig(**TINY, **extra)
    ref = reference_model(getattr(transformers, name), config, tmp_path)
    ours = getattr(data2vec, name).from_pretrained(tmp_path)
    ids, mask, token_types = padded_batch()
    inputs = dict(input_ids=ids, attention_mask=mask, token_type_ids=token_types)
    inputs.update(labels_for(name, ids, mask))
    with torch.no_grad():
        ref_out = ref(**inputs, output_hidden_states=True, output_attentions=True)
        our_out = ours(**inputs, output_hidden_states=True, output_attentions=True)
    compare_outputs(our_out, ref_out, fields)
    # without output_attentions our fused SDPA path runs: same numbers
    with torch.no_grad():
        fast = ours(**inputs)
    first = fields[1] if fields[0] == "loss" else fields[0]
    assert_close(getattr(fast, first), getattr(ref_out, first), first + " (fused attention)")


@pytest.mark.parametrize(
    "problem_type,labels",
    [
        (None, torch.tensor([0, 2, 1])),
        ("single_label_classification", torch.tensor([1, 1, 0])),
        ("multi_label_classification", torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])),
        ("regression", torch.tensor([[0.5, -1.0, 2.0], [0.1, 0.2, 0.3], [1.0, 0.0, -0.5]])),
    ],
)
def test_sequence_classification_problem_types(tmp_path, problem_type, labels):
    config = transformers.Data2VecTextConfig(**TINY, num_labels=3, problem_type=problem_type)
    ref = reference_model(transformers.Data2VecTextForSequenceClassification, config, tmp_path)
    ours = data2vec.Data2VecTextForSequenceClassification.from_pretrained(tmp_path)
    ids, mask, _ = padded_batch()
    with torch.no_grad():
        ref_out = ref(input_ids=ids, attention_mask=mask, labels=labels, output_hidden_states=True)
        our_out = ours(input_ids=ids, attention_mask=mask, labels=labels, output_hidden_states=True)
    compare_outputs(our_out, ref_out, ["loss", "logits", "hidden_states"])


def test_single_output_regression(tmp_path):
    config = transformers.Data2VecTextConfig(**TINY, num_labels=1)
    ref = reference_model(transformers.Data2VecTextForSequenceClassification, config, tmp_path)
    ours = data2vec.Data2VecTextForSequenceClassification.from_pretrained(tmp_path)
    ids, mask, _ = padded_batch()
    labels = torch.tensor([0.3, -1.2, 2.0])
    with torch.no_grad():
        compare_outputs(ours(ids, mask, labels=labels), ref(ids, mask, labels=labels), ["loss", "logits"])


def test_multiple_choice(tmp_path):
    config = transformers.Data2VecTextConfig(**TINY)
    ref = reference_model(transformers.Data2VecTextForMultipleChoice, config, tmp_path)
    ours = data2vec.Data2VecTextForMultipleChoice.from_pretrained(tmp_path)
    ids, mask, token_types = padded_batch(batch=3)
    # (batch=2, choices=3, length)
    ids = torch.stack([ids, ids.flip(0)])
    mask = torch.stack([mask, mask.flip(0)])
    token_types = torch.stack([token_types, token_types])
    labels = torch.tensor([2, 0])
    inputs = dict(input_ids=ids, attention_mask=mask, token_type_ids=token_types, labels=labels)
    with torch.no_grad():
        ref_out = ref(**inputs, output_hidden_states=True, output_attentions=True)
        our_out = ours(**inputs, output_hidden_states=True, output_attentions=True)
    compare_outputs(our_out, ref_out, ["loss", "logits", "hidden_states", "attentions"])


def test_inputs_embeds_and_position_ids(tmp_path):
    config = transformers.Data2VecTextConfig(**TINY)
    ref = reference_model(transformers.Data2VecTextModel, config, tmp_path)
    ours = data2vec.Data2VecTextModel.from_pretrained(tmp_path)
    ids, mask, _ = padded_batch()
    embeds = ours.embeddings.word_embeddings(ids).detach() + 0.01
    positions = torch.arange(2, 2 + ids.shape[1]).expand_as(ids).flip(1)
    with torch.no_grad():
        assert_close(ours(inputs_embeds=embeds, attention_mask=mask).last_hidden_state,
                     ref(inputs_embeds=embeds, attention_mask=mask).last_hidden_state, "inputs_embeds")
        assert_close(ours(input_ids=ids, position_ids=positions).last_hidden_state,
                     ref(input_ids=ids, position_ids=positions).last_hidden_state, "position_ids")


def decoder_config(**extra):
    return transformers.Data2VecTextConfig(**TINY, is_decoder=True, **extra)


def test_causal_lm_with_labels(tmp_path):
    ref = reference_model(transformers.Data2VecTextForCausalLM, decoder_config(), tmp_path)
    ours = data2vec.Data2VecTextForCausalLM.from_pretrained(tmp_path)
    ids, mask, _ = padded_batch()
    labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        ref_out = ref(input_ids=ids, attention_mask=mask, labels=labels, output_hidden_states=True, output_attentions=True)
        our_out = ours(input_ids=ids, attention_mask=mask, labels=labels, output_hidden_states=True, output_attentions=True)
    compare_outputs(our_out, ref_out, ["loss", "logits", "hidden_states", "attentions"])


def test_decoder_with_cross_attention(tmp_path):
    ref = reference_model(transformers.Data2VecTextForCausalLM, decoder_config(add_cross_attention=True), tmp_path)
    ours = data2vec.Data2VecTextForCausalLM.from_pretrained(tmp_path)
    ids, mask, _ = padded_batch()
    encoder_states = torch.randn(3, 6, TINY["hidden_size"], generator=torch.Generator().manual_seed(3))
    encoder_mask = torch.ones(3, 6, dtype=torch.long)
    encoder_mask[1, 4:] = 0
    inputs = dict(input_ids=ids, attention_mask=mask, encoder_hidden_states=encoder_states,
                  encoder_attention_mask=encoder_mask, output_hidden_states=True, output_attentions=True, use_cache=False)
    with torch.no_grad():
        ref_out = ref(**inputs)
        our_out = ours(**inputs)
    compare_outputs(our_out, ref_out, ["logits", "hidden_states", "attentions", "cross_attentions"])


def test_incremental_decoding_matches_full_pass(tmp_path):
    """With the cache, feeding tokens in pieces gives the full pass's logits (ours and reference)."""
    ref = reference_model(transformers.Data2VecTextForCausalLM, decoder_config(add_cross_attention=True), tmp_path)
    ours = data2vec.Data2VecTextForCausalLM.from_pretrained(tmp_path)
    generator = torch.Generator().manual_seed(5)
    ids = torch.randint(3, TINY["vocab_size"], (2, 8), generator=generator)
    encoder_states = torch.randn(2, 5, TINY["hidden_size"], generator=generator)
    with torch.no_grad():
        full_ref = ref(input_ids=ids, encoder_hidden_states=encoder_states, use_cache=False).logits
        full = ours(input_ids=ids, encoder_hidden_states=encoder_states, use_cache=False).logits
        assert_close(full, full_ref, "full pass")
        first = ours(input_ids=ids[:, :5], encoder_hidden_states=encoder_states, use_cache=True)
        pieces = [first.logits]
        past = first.past_key_values
        for step in range(5, 8):
            out = ours(input_ids=ids[:, step : step + 1], encoder_hidden_states=encoder_states,
                       past_key_values=past, use_cache=True)
            past = out.past_key_values
            pieces.append(out.logits)
        assert_close(torch.cat(pieces, dim=1), full_ref, "incremental")
        # the reference's own incremental pass agrees too
        ref_first = ref(input_ids=ids[:, :5], encoder_hidden_states=encoder_states, use_cache=True)
        ref_next = ref(input_ids=ids[:, 5:6], encoder_hidden_states=encoder_states,
                       cache=ref_first.cache, use_cache=True)
        assert_close(pieces[1], ref_next.logits, "reference incremental step")


def test_greedy_generate_matches_reference_argmax_loop(tmp_path):
    """Greedy generation with our cache equals repeated full passes of the reference, taking the
    argmax each step. (The reference's own generate() passes 0-based position ids, unlike the
    model's RoBERTa positions from padding_idx + 1, so its output is not the oracle here.)"""
    ref = reference_model(transformers.Data2VecTextForCausalLM, decoder_config(), tmp_path)
    ours = data2vec.Data2VecTextForCausalLM.from_pretrained(tmp_path)
    prompt = torch.tensor([[0, 17, 42, 8], [0, 3, 9, 11]])
    ours_tokens = ours.generate(prompt, max_new_tokens=6, eos_token_id=-1)
    expected = prompt
    with torch.no_grad():
        for _ in range(6):
            next_ids = ref(input_ids=expected, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            expected = torch.cat([expected, next_ids], dim=1)
    assert ours_tokens.tolist() == expected.tolist()


def test_generate_stops_at_eos_and_samples_reproducibly(tmp_path):
    reference_model(transformers.Data2VecTextForCausalLM, decoder_config(), tmp_path)
    ours = data2vec.Data2VecTextForCausalLM.from_pretrained(tmp_path)
    prompt = torch.tensor([[0, 17, 42, 8], [PAD, 0, 5, 9]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 1, 1, 1]])
    greedy = ours.generate(prompt, mask, max_new_tokens=5, eos_token_id=-1)
    first_new = int(greedy[0, 4])
    stopped = ours.generate(prompt[:1], max_new_tokens=5, eos_token_id=first_new)
    assert stopped.shape == (1, 5) and int(stopped[0, -1]) == first_new
    # the left-padded row continues exactly as it would alone
    alone = ours.generate(prompt[1:, 1:], max_new_tokens=5, eos_token_id=-1)
    assert greedy[1, 1:].tolist() == alone[0].tolist()
    sample = lambda seed: ours.generate(prompt, mask, max_new_tokens=5, do_sample=True, top_k=5, top_p=0.9,
                                        eos_token_id=-1, generator=torch.Generator().manual_seed(seed))
    assert sample(7).tolist() == sample(7).tolist()
