"""Word-replacement augmentation for distilling text students (TinyBERT-style).

A small student fine-tuned on a few thousand tweets overfits within 3–4 epochs
(BENCHMARKS.md). TinyBERT's answer is more data, labelled by the teacher: replace
words by near neighbours and let the teacher say what the new sentence means. It
takes its neighbours from GloVe and BERT's MLM head; neither ships offline with our
checkpoints, so the neighbours here come from the teacher's own input embeddings.

Only whole words (one alphabetic WordPiece, not followed by a `##` piece) are
replaced, and only by whole words, so a row keeps its length and padding. A
replacement may flip a sentence's sentiment ("gains" → "losses"): that is why an
augmented row is scored against the teacher's output for it, never its original label.
"""

from __future__ import annotations

import re

import torch
from torch.nn import functional as F

NEIGHBOURS = 8
"""Candidates per word: the nearest whole words by cosine of the input embeddings."""

AUGMENTED_ROW_SHARE = 0.5
"""Share of each batch's rows that are augmented (fresh draws every batch); the rest
stay as they are, so the student still sees the distribution it will be scored on."""

_WHOLE_WORD = re.compile(r"^[a-z]{2,}$")
_CHUNK = 1024


class WordNeighbours:
    """For each vocabulary word seen in training, its `NEIGHBOURS` nearest whole words."""

    def __init__(
        self, embeddings: torch.Tensor, vocabulary: dict[str, int], seen_ids: torch.Tensor
    ) -> None:
        size = embeddings.shape[0]
        self.word = torch.zeros(size, dtype=torch.bool)
        self.continuation = torch.zeros(size, dtype=torch.bool)
        for token, token_id in vocabulary.items():
            if token_id < size:
                self.word[token_id] = bool(_WHOLE_WORD.match(token))
                self.continuation[token_id] = token.startswith("##")
        candidates = self.word.nonzero().squeeze(1)
        sources = torch.unique(seen_ids)
        sources = sources[self.word[sources]]
        self.neighbours = torch.arange(size).unsqueeze(1).repeat(1, NEIGHBOURS)
        unit = F.normalize(embeddings.detach().float(), dim=1)
        targets = unit[candidates]
        for chunk in sources.split(_CHUNK):
            similarity = unit[chunk] @ targets.T
            similarity[torch.arange(len(chunk)), _positions(candidates, chunk)] = -2.0  # not itself
            nearest = similarity.topk(NEIGHBOURS, dim=1).indices
            self.neighbours[chunk] = candidates[nearest]

    def replace(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        word_prob: float,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A copy of `input_ids` with `AUGMENTED_ROW_SHARE` of the rows augmented (each
        whole word replaced with probability `word_prob`), and which rows those are."""
        rows = torch.rand(input_ids.shape[0], generator=generator) < AUGMENTED_ROW_SHARE
        following = torch.roll(input_ids, shifts=-1, dims=1)
        following[:, -1] = 0
        whole = self.word[input_ids] & ~self.continuation[following] & attention_mask.bool()
        draw = torch.rand(input_ids.shape, generator=generator) < word_prob
        pick = torch.randint(NEIGHBOURS, input_ids.shape, generator=generator)
        replaced = whole & draw & rows.unsqueeze(1)
        substitutes = self.neighbours[input_ids, pick]
        return torch.where(replaced, substitutes, input_ids), rows


def _positions(candidates: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Where each of `ids` (all whole words) sits in the sorted `candidates`."""
    return torch.searchsorted(candidates, ids)
