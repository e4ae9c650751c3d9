"""Choosing each row's next audio token with its own settings, all rows at once.

The rules are those coqui's XTTS streaming gets from Hugging Face `generate` (applied in this
order): the repetition penalty over every token id the row has seen, which for XTTS includes the
placeholder id 1 of its prefix and the start audio token; then temperature, top-k and top-p
(keeping at least one token); then a draw from the softmax. Vectorised over rows so that a batch
costs one pass, with per-row settings as columns."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.75
    """Above 0 (a temperature of 0 would divide by zero; Hugging Face refuses it too)."""
    repetition_penalty: float = 10.0
    top_k: int = 50
    top_p: float = 0.85


class RowSampler:
    """Per-row settings and seen tokens for a batch whose rows come and go."""

    def __init__(self, vocabulary: int, device: torch.device):
        self.vocabulary, self.device = vocabulary, device
        self.seen = torch.zeros(0, vocabulary, dtype=torch.bool, device=device)
        self.settings: list[Sampling] = []
        self._columns: dict[str, torch.Tensor] = {}

    def add(self, sampling: Sampling, seen_tokens: list[int]) -> None:
        row = torch.zeros(1, self.vocabulary, dtype=torch.bool, device=self.device)
        row[0, seen_tokens] = True
        self.seen = torch.cat([self.seen, row])
        self.settings.append(sampling)
        self._columns = {}

    def keep(self, rows: list[int]) -> None:
        self.seen = self.seen[rows]
        self.settings = [self.settings[i] for i in rows]
        self._columns = {}

    def _column(self, name: str, dtype: torch.dtype) -> torch.Tensor:
        if name not in self._columns:
            self._columns[name] = torch.tensor([[getattr(s, name)] for s in self.settings], dtype=dtype,
                                               device=self.device)
        return self._columns[name]

    def choose(self, logits: torch.Tensor) -> torch.Tensor:
        """The next token of every row (rows,), recorded as seen."""
        assert logits.shape[0] == len(self.settings)
        scores = logits.float()
        penalty = self._column("repetition_penalty", torch.float32)
        penalised = torch.where(scores < 0, scores * penalty, scores / penalty)
        scores = torch.where(self.seen, penalised, scores)
        scores = scores / self._column("temperature", torch.float32)
        scores = self._top_k(scores)
        scores = self._top_p(scores)
        tokens = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)
        self.seen[torch.arange(len(tokens), device=self.device), tokens] = True
        return tokens

    def _top_k(self, scores: torch.Tensor) -> torch.Tensor:
        k = self._column("top_k", torch.long).clamp(1, scores.shape[-1])
        ordered = scores.sort(dim=-1, descending=True).values
        kth = ordered.gather(-1, k - 1)
        return scores.masked_fill(scores < kth, float("-inf"))

    def _top_p(self, scores: torch.Tensor) -> torch.Tensor:
        top_p = self._column("top_p", torch.float32)
        ordered, order = scores.sort(dim=-1, descending=False)
        cumulative = ordered.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= (1 - top_p)
        remove[:, -1] = False  # the most likely token always stays
        return scores.masked_fill(remove.scatter(1, order, remove), float("-inf"))
