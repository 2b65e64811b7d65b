"""A small ``generate()`` for the causal language model: greedy or top-k / top-p sampling
with the key/value cache. Batched prompts must be padded on the left."""

from __future__ import annotations

import torch


def _filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Set to -inf every logit outside the top-k and outside the smallest set whose probability
    reaches top_p (the most likely token always stays)."""
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cumulative - sorted_logits.softmax(dim=-1) >= top_p  # mass before this token already enough
        remove = remove_sorted.scatter(-1, order, remove_sorted)
        logits = logits.masked_fill(remove, float("-inf"))
    return logits


@torch.no_grad()
def generate(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    max_new_tokens: int = 20,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
    generator: torch.Generator | None = None,
    encoder_hidden_states: torch.Tensor | None = None,
    encoder_attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Continue ``input_ids`` (batch, length) by up to ``max_new_tokens`` tokens.

    Returns (batch, length + generated). A row stops at ``eos_token_id`` (default: the config's)
    and is filled with ``pad_token_id`` afterwards; generation ends when every row has stopped.
    """
    config = model.config
    if not config.is_decoder:
        raise ValueError("generate() needs a causal model: load it with is_decoder=True")
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    eos_token_id = config.eos_token_id if eos_token_id is None else eos_token_id
    pad_token_id = config.pad_token_id if pad_token_id is None else pad_token_id
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    attention_mask = attention_mask.to(input_ids.device).long()
    if bool((attention_mask[:, -1] == 0).any()):
        raise ValueError("generate() needs prompts padded on the left (tokenizer padding_side='left')")

    padding_idx = config.pad_token_id
    # positions as in a full pass: real tokens count from padding_idx + 1, padding stays at padding_idx
    position_ids = torch.cumsum(attention_mask, dim=1) * attention_mask + padding_idx
    sequences = input_ids
    finished = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    step_ids, past = input_ids, None
    was_training = model.training
    model.eval()
    try:
        for _ in range(max_new_tokens):
            out = model(
                input_ids=step_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=past,
                use_cache=True,
                encoder_hidden_states=encoder_hidden_states,
                encoder_attention_mask=encoder_attention_mask,
            )
            past = out.past_key_values
            logits = out.logits[:, -1].float()  # (batch, vocab)
            if do_sample:
                logits = _filter_logits(logits / temperature, top_k, top_p)
                next_ids = torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(1)
            else:
                next_ids = logits.argmax(dim=-1)
            if pad_token_id is not None:
                next_ids = torch.where(finished, torch.full_like(next_ids, pad_token_id), next_ids)
            sequences = torch.cat([sequences, next_ids[:, None]], dim=1)
            if eos_token_id is not None:
                finished |= next_ids == eos_token_id
                if bool(finished.all()):
                    break
            step_ids = next_ids[:, None]
            attention_mask = torch.cat([attention_mask, torch.ones_like(step_ids)], dim=1)
            position_ids = attention_mask.sum(dim=1, keepdim=True) + padding_idx
    finally:
        model.train(was_training)
    return sequences
