"""``drop_padding=True``: the blocks run on the real tokens only, packed into one row. The real
positions must get exactly what the padded batch gives them (which the parity tests tie to the
reference library), the padded positions zeros, for the backbone and every head, right and left
padding, and the causal decoder."""

from __future__ import annotations

import pytest
import torch

import data2vec
from data2vec.core.attention import BlockDiagonal
from data2vec.core.encoder import common_size_padding, packed_rows_to_add
from tests.helpers import add_noise

TINY = dict(
    vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
    max_position_embeddings=64, type_vocab_size=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    num_labels=3,
)  # fmt: skip
PAD = 1


def padded_batch(lengths, width, left=False, seed=0):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.full((len(lengths), width), PAD)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, length in enumerate(lengths):
        span = slice(width - length, width) if left else slice(0, length)
        input_ids[row, span] = torch.randint(3, TINY["vocab_size"], (length,), generator=generator)
        mask[row, span] = 1
    return input_ids, mask


def model_of(cls, **config):
    torch.manual_seed(0)
    return add_noise(cls(data2vec.Data2VecTextConfig(**{**TINY, **config}))).eval()


@pytest.mark.parametrize("left", [False, True], ids=["right-padding", "left-padding"])
def test_the_backbone_gives_the_padded_batch_outputs_at_real_positions(left):
    model = model_of(data2vec.Data2VecTextModel)
    input_ids, mask = padded_batch([9, 3, 12, 1], 12, left=left)
    token_type_ids = (torch.arange(12) >= 6).long().expand(4, -1)
    with torch.no_grad():
        full = model(input_ids, mask, token_type_ids, output_hidden_states=True)
        packed = model(input_ids, mask, token_type_ids, output_hidden_states=True, drop_padding=True)
    real = mask.bool()
    torch.testing.assert_close(packed.last_hidden_state[real], full.last_hidden_state[real], atol=1e-5, rtol=0)
    assert not packed.last_hidden_state[~real].any()  # padded positions are zeros, as documented
    for ours, reference in zip(packed.hidden_states, full.hidden_states, strict=True):
        torch.testing.assert_close(ours[real], reference[real], atol=1e-5, rtol=0)
    if not left:  # the pooler reads the first token, real with right padding
        torch.testing.assert_close(packed.pooler_output, full.pooler_output, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "cls, output",
    [
        (data2vec.Data2VecTextForSequenceClassification, "logits"),
        (data2vec.Data2VecTextForTokenClassification, "logits"),
        (data2vec.Data2VecTextForMaskedLM, "logits"),
        (data2vec.Data2VecTextForQuestionAnswering, "start_logits"),
    ],
)
def test_every_head_gives_the_padded_batch_outputs(cls, output):
    model = model_of(cls, **({"num_labels": 2} if output == "start_logits" else {}))  # QA: start and end
    input_ids, mask = padded_batch([7, 2, 5], 7)
    with torch.no_grad():
        full, packed = (getattr(model(input_ids, mask, drop_padding=drop), output) for drop in (False, True))
    if full.shape[:2] == mask.shape:  # one output per token: the real tokens' must agree
        full, packed = full[mask.bool()], packed[mask.bool()]
    torch.testing.assert_close(packed, full, atol=1e-5, rtol=0)


def test_a_loss_trains_through_the_packed_tokens_as_through_the_padded_batch():
    model = model_of(data2vec.Data2VecTextForTokenClassification)
    model.train()
    input_ids, mask = padded_batch([6, 4], 6)
    labels = torch.randint(0, 3, (2, 6)).masked_fill(mask == 0, -100)
    gradients = []
    for drop in (False, True):
        model.zero_grad()
        model(input_ids, mask, labels=labels, drop_padding=drop).loss.backward()
        gradients.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    torch.testing.assert_close(gradients[1], gradients[0], atol=1e-5, rtol=1e-4)


def test_the_causal_decoder_and_multiple_choice():
    decoder = model_of(data2vec.Data2VecTextForCausalLM, is_decoder=True)
    input_ids, mask = padded_batch([8, 3, 5], 8)
    with torch.no_grad():
        full = decoder(input_ids, mask, use_cache=False).logits
        packed = decoder(input_ids, mask, drop_padding=True).logits
    torch.testing.assert_close(packed[mask.bool()], full[mask.bool()], atol=1e-5, rtol=0)

    choices = model_of(data2vec.Data2VecTextForMultipleChoice)
    input_ids, mask = padded_batch([6, 2, 4, 5], 6)
    with torch.no_grad():
        full = choices(input_ids.view(2, 2, 6), attention_mask=mask.view(2, 2, 6)).logits
        packed = choices(input_ids.view(2, 2, 6), attention_mask=mask.view(2, 2, 6), drop_padding=True).logits
    torch.testing.assert_close(packed, full, atol=1e-5, rtol=0)


def test_what_does_not_combine_is_an_error_and_no_mask_means_nothing_to_drop():
    model = model_of(data2vec.Data2VecTextModel)
    input_ids, mask = padded_batch([4, 2], 4)
    with pytest.raises(ValueError, match="drop_padding runs self attention on the real tokens only"):
        model(input_ids, mask, output_attentions=True, drop_padding=True)
    with torch.no_grad():  # without a mask every token is real: the option changes nothing
        torch.testing.assert_close(model(input_ids, drop_padding=True).last_hidden_state, model(input_ids).last_hidden_state)


def test_block_diagonal_attention_equals_the_masked_dense_attention():
    torch.manual_seed(0)
    lengths = (3, 1, 5)
    query, key, value = (torch.randn(1, 2, sum(lengths), 4) for _ in range(3))
    for causal in (False, True):
        sequence = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
        allowed = sequence[:, None] == sequence[None, :]
        if causal:
            allowed &= torch.ones_like(allowed).tril().bool()
        dense = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=allowed)
        packed = BlockDiagonal(lengths, causal).attend(query, key, value, dropout=0.0)
        torch.testing.assert_close(packed, dense, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"packed sequences of lengths \[3, 1, 5\] need queries"):
        BlockDiagonal(lengths).attend(query[:, :, :4], key, value, dropout=0.0)


def test_masked_lm_logits_at_labels_only_give_the_same_loss_and_gradients():
    model = model_of(data2vec.Data2VecTextForMaskedLM)
    model.train()
    input_ids, mask = padded_batch([9, 6, 8], 9, seed=3)
    labels = torch.full_like(input_ids, -100)
    labels[0, [1, 4]], labels[1, 2], labels[2, [0, 5, 7]] = input_ids[0, [1, 4]], input_ids[1, 2], input_ids[2, [0, 5, 7]]
    results = []
    for only in (False, True):
        model.zero_grad()
        torch.manual_seed(0)
        output = model(input_ids, mask, labels=labels, logits_at_labels_only=only, drop_padding=only)
        output.loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results.append((output, grads))
    (full, full_grads), (sparse, sparse_grads) = results
    torch.testing.assert_close(sparse.loss, full.loss, atol=1e-6, rtol=0)
    torch.testing.assert_close(sparse_grads, full_grads, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(sparse.logits, full.logits[labels != -100], atol=1e-5, rtol=0)  # the scored rows


def test_packed_rows_are_rounded_up_only_for_half_precision_on_the_cpu():
    # The rule (core.encoder.packed_rows_to_add): round the packed row count up to a multiple of
    # 32, or of 1/16 of the largest power of two not above it when that is more.
    rows = lambda count, dtype=torch.bfloat16: packed_rows_to_add(torch.zeros(count, 4, dtype=dtype))  # noqa: E731
    assert rows(100) == 28  # -> 128 (step 32)
    assert rows(1000) == 24  # 512 / 16 = 32 -> 1024
    assert rows(5000) == 120  # 4096 / 16 = 256 -> 5120
    assert rows(96) == 0 and rows(0) == 0
    assert common_size_padding(1) == 31 and common_size_padding(33) == 31 and common_size_padding(64) == 0
    assert rows(100, torch.float32) == 0  # float32 products pay nothing for a new shape
    with torch.autocast("cpu", dtype=torch.bfloat16):  # float32 states whose products run in bf16
        assert rows(100, torch.float32) == 28


def test_rows_added_to_the_packed_batch_change_no_output_and_no_gradient(monkeypatch):
    """float32, with rows forced: the real positions' outputs and every gradient are those of the
    packed batch without them, and the blocks see the rounded-up row count."""
    import data2vec.core.encoder as encoder_module

    model = model_of(data2vec.Data2VecTextForTokenClassification)
    input_ids, mask = padded_batch([9, 3, 12, 1], 12)
    labels = torch.randint(0, 3, (4, 12)).masked_fill(mask == 0, -100)
    seen = []
    model.backbone.encoder.layers[0].register_forward_pre_hook(lambda _, args: seen.append(args[0].shape[1]))
    results = []
    for extra in (0, 7):
        monkeypatch.setattr(encoder_module, "packed_rows_to_add", lambda states, extra=extra: extra)
        model.zero_grad()
        output = model(input_ids, mask, labels=labels, output_hidden_states=True, drop_padding=True)
        output.loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results.append((output.logits, output.hidden_states, grads))
    assert seen == [25, 32]  # 9 + 3 + 12 + 1 real tokens, then 7 rows more
    (logits, hidden, grads), (logits_extra, hidden_extra, grads_extra) = results
    torch.testing.assert_close(logits_extra, logits, atol=1e-6, rtol=0)  # padded positions included
    for states, states_extra in zip(hidden, hidden_extra, strict=True):
        assert states_extra.shape == states.shape
        torch.testing.assert_close(states_extra, states, atol=1e-6, rtol=0)
    torch.testing.assert_close(grads_extra, grads, atol=1e-6, rtol=1e-5)


def test_a_bfloat16_model_packs_to_a_rounded_row_count_and_keeps_its_outputs():
    model = model_of(data2vec.Data2VecTextModel)
    input_ids, mask = padded_batch([9, 3, 12, 1], 12)
    with torch.no_grad():
        reference = model(input_ids, mask).last_hidden_state
        half = model.to(torch.bfloat16)
        seen = []
        half.encoder.layers[0].register_forward_pre_hook(lambda _, args: seen.append(args[0].shape[1]))
        packed = half(input_ids, mask, drop_padding=True).last_hidden_state
    assert seen == [32]  # 25 real tokens, rounded up
    real = mask.bool()
    assert not packed[~real].any()
    torch.testing.assert_close(packed[real].float(), reference[real], atol=0.1, rtol=0.05)  # bf16 against float32
