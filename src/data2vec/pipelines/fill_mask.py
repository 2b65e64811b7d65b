"""Masked-token prediction: text with ``<mask>`` in, the most likely fillers out."""

from __future__ import annotations

import torch


class FillMaskPipeline:
    def __init__(self, model, tokenizer) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer

    @torch.no_grad()
    def __call__(self, text: str, top_k: int = 5) -> list[dict]:
        """Returns, for the (first) ``<mask>`` in ``text``, the ``top_k`` predictions as dicts with
        ``token_str``, ``token``, ``score`` and the filled-in ``sequence``."""
        mask_token = self.tokenizer.mask_token
        if mask_token not in text:
            raise ValueError(f"the text has no {mask_token} token to fill: {text!r}")
        encoded = self.tokenizer(text, return_tensors="pt", truncation=True)
        ids = encoded["input_ids"].to(self.model.device)
        position = int((ids[0] == self.tokenizer.mask_token_id).nonzero()[0])
        logits = self.model(input_ids=ids, attention_mask=encoded["attention_mask"].to(ids.device)).logits
        probabilities = logits[0, position].float().softmax(dim=-1)
        scores, token_ids = probabilities.topk(top_k)
        results = []
        for score, token_id in zip(scores.tolist(), token_ids.tolist()):
            filled = ids[0].clone()
            filled[position] = token_id
            results.append(
                {
                    "token": token_id,
                    "token_str": self.tokenizer.decode([token_id]),
                    "score": score,
                    "sequence": self.tokenizer.decode(filled.tolist(), skip_special_tokens=True),
                }
            )
        return results
