"""BatchedGpt: XTTS's GPT decoding many sentences at once, with rows joining and leaving between
steps. It drives coqui's own modules (the GPT-2 stack, the text/mel embeddings and their learned
positions, the final norm and mel head) with their weights as loaded; nothing of coqui is copied.

How rows of different lengths share one key/value cache:
- XTTS's GPT-2 has no position embedding of its own (coqui replaces `wpe` with zeros); positions
  enter only through the learned text and mel position embeddings added to each input. So a row
  can sit anywhere in the cache's time axis: rows are **left-padded** to the longest row, and a 2-D
  attention mask (1 = real, 0 = padding) hides the padding. Padded keys get no attention weight, so
  a row computes what it would alone (up to float summation order).
- **Join** (prefill): a sentence's prefix is conditioning latents + text embeddings + the start
  audio token, computed in one forward (several joining rows together, left-padded). Their cache
  is then concatenated to the running one along the batch axis, left-padding whichever side is
  shorter.
- **Step**: every row feeds its last token (mel embedding + mel position of that row) and gets one
  token's logits and latent back; the mask grows by one real column for everyone.
- **Leave**: a finished or stopped row is dropped from the batch axis (index select); columns that
  have become padding for every remaining row are cut from the left, so the cache never stays wider
  than its longest live row.
Join and leave copy the cache once (O(rows x length x layers)). A step writes only its new column,
in place: each layer keeps its keys and values in a buffer with room to grow (`RoomyLayer`), where
Hugging Face's default layer would concatenate, copying the whole cache at every step (at 16 rows
that copy costs about as much as reading the weights). Each row's position counter is its own, so
rows need not start together."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

SPARE_STEPS = 64
"""Columns a layer's buffer holds beyond its contents; it grows by at least this much when full."""


class RoomyLayer(DynamicLayer):
    """A cache layer whose keys and values are views of a larger buffer: appending a step writes
    one column in place. Shapes are (rows, heads, time, channels)."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        super().__init__()
        self.dtype, self.device = keys.dtype, keys.device
        self.is_initialized = True
        self._store(keys, values)

    def _store(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        rows, heads, length, channels = keys.shape
        self._keys = keys.new_empty(rows, heads, length + max(SPARE_STEPS, length // 2), channels)
        self._values = torch.empty_like(self._keys)
        self._keys[:, :, :length] = keys
        self._values[:, :, :length] = values
        self._length = length
        self._expose()

    def _expose(self) -> None:
        self.keys = self._keys[:, :, :self._length]
        self.values = self._values[:, :, :self._length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        added = key_states.shape[2]
        if self._length + added > self._keys.shape[2]:
            self._store(self.keys, self.values)
        self._keys[:, :, self._length:self._length + added] = key_states
        self._values[:, :, self._length:self._length + added] = value_states
        self._length += added
        self._expose()
        return self.keys, self.values

    def replace(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """New contents (rows joined or left): copied into a fresh buffer."""
        self._store(keys, values)


@dataclass
class StepOutput:
    """One forward's result for each row: the logits of the next token and the latent the
    decoder turns into audio (coqui's `final_norm` of the last hidden state)."""

    logits: torch.Tensor  # (rows, audio vocabulary)
    latents: torch.Tensor  # (rows, model channels)


class BatchedGpt:
    def __init__(self, gpt: torch.nn.Module):
        """`gpt` is a loaded coqui XTTS `model.gpt` after `init_gpt_for_inference`."""
        self.gpt = gpt
        self.inference = gpt.gpt_inference
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor | None = None  # (rows, cache length): 1 real, 0 padding
        self.positions: torch.Tensor | None = None  # (rows,): mel position of each row's next input

    # ----- join

    def voice_prefix(self, cond_latents: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The keys and values (per layer, each (1, heads, latents, channels)) of a voice's
        conditioning latents: the part of every sentence's prefix that depends on the voice alone.
        Attention is causal, so they do not depend on what follows and are computed once per voice."""
        out = self.inference.transformer(inputs_embeds=cond_latents, use_cache=True, return_dict=True)
        return [(layer.keys, layer.values) for layer in out.past_key_values.layers]

    def text_embeddings(self, text_tokens: torch.Tensor) -> torch.Tensor:
        """(1, length, channels): the rest of the prefix coqui's streaming path feeds for one
        sentence: the text between its start and stop tokens, then the start audio token."""
        gpt = self.gpt
        text = F.pad(text_tokens, (0, 1), value=gpt.stop_text_token)
        text = F.pad(text, (1, 0), value=gpt.start_text_token)
        text_emb = gpt.text_embedding(text) + gpt.text_pos_embedding(text)
        start = torch.full((1, 1), gpt.start_audio_token, dtype=torch.long, device=text_tokens.device)
        start_emb = gpt.mel_embedding(start) + gpt.mel_pos_embedding(start)
        return torch.cat([text_emb, start_emb], dim=1)

    def join(self, rows: list[tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]]) -> StepOutput:
        """Prefills the text of new rows (each: its voice prefix, its text embeddings) in one
        forward over their voice prefixes, and appends them as the last rows of the batch. Both
        parts are left-padded to the longest, so a row's padding may sit between them: the mask
        hides it wherever it is. Returns the first step of each new row."""
        voice_length = max(prefix[0][0].shape[2] for prefix, _ in rows)
        text_length = max(text.shape[1] for _, text in rows)
        layers = len(rows[0][0])
        past = DynamicCache()
        for layer in range(layers):
            keys = torch.cat([_pad_time(prefix[layer][0], voice_length) for prefix, _ in rows])
            values = torch.cat([_pad_time(prefix[layer][1], voice_length) for prefix, _ in rows])
            past.update(keys, values, layer)
        embeds = torch.cat([F.pad(text, (0, 0, text_length - text.shape[1], 0)) for _, text in rows])
        device = embeds.device
        mask = torch.stack([torch.cat([_left_padded_ones(prefix[0][0].shape[2], voice_length, device),
                                       _left_padded_ones(text.shape[1], text_length, device)])
                            for prefix, text in rows])
        out = self.inference.transformer(
            inputs_embeds=embeds,
            past_key_values=past,
            attention_mask=mask,
            use_cache=True,
            output_hidden_states=True,
            return_dict=True,
        )
        self._append(out.past_key_values, mask)
        new_positions = torch.ones(len(rows), dtype=torch.long, device=device)
        self.positions = new_positions if self.positions is None else torch.cat([self.positions, new_positions])
        return self._outputs(out)

    def _append(self, cache: DynamicCache, mask: torch.Tensor) -> None:
        if self.cache is None:
            cache.layers = [RoomyLayer(layer.keys, layer.values) for layer in cache.layers]
            self.cache, self.mask = cache, mask
            return
        old, new = self.mask.shape[1], mask.shape[1]
        width = max(old, new)
        for mine, theirs in zip(self.cache.layers, cache.layers):
            mine.replace(
                torch.cat([_pad_time(mine.keys, width), _pad_time(theirs.keys, width)]),
                torch.cat([_pad_time(mine.values, width), _pad_time(theirs.values, width)]),
            )
        self.mask = torch.cat([F.pad(self.mask, (width - old, 0)), F.pad(mask, (width - new, 0))])

    # ----- step

    def step(self, tokens: torch.Tensor) -> StepOutput:
        """Feeds each row its last token (rows, ) and returns the next step of every row."""
        assert self.cache is not None and self.mask is not None and self.positions is not None
        embeds = (self.gpt.mel_embedding(tokens) + self.gpt.mel_pos_embedding.emb(self.positions)).unsqueeze(1)
        self.mask = F.pad(self.mask, (0, 1), value=1)
        out = self.inference.transformer(
            inputs_embeds=embeds,
            past_key_values=self.cache,
            attention_mask=self.mask,
            use_cache=True,
            output_hidden_states=True,
            return_dict=True,
        )
        self.positions = self.positions + 1
        return self._outputs(out)

    def _outputs(self, out) -> StepOutput:
        last = out.last_hidden_state[:, -1:]
        logits = self.inference.lm_head(last)[:, -1].float()
        latents = self.gpt.final_norm(out.hidden_states[-1][:, -1])
        return StepOutput(logits, latents)

    # ----- leave

    def keep(self, rows: list[int]) -> None:
        """Keeps only `rows` (indices into the current batch, in order); frees the rest."""
        if not rows:
            self.cache = self.mask = self.positions = None
            return
        assert self.cache is not None and self.mask is not None and self.positions is not None
        index = torch.tensor(rows, dtype=torch.long, device=self.mask.device)
        mask = self.mask.index_select(0, index)
        unused = int((mask.sum(dim=0) == 0).long().cumprod(dim=0).sum())  # leading all-padding columns
        for layer in self.cache.layers:
            layer.replace(
                layer.keys.index_select(0, index)[:, :, unused:], layer.values.index_select(0, index)[:, :, unused:]
            )
        self.mask = mask[:, unused:]
        self.positions = self.positions.index_select(0, index)


def _left_padded_ones(real: int, width: int, device: torch.device) -> torch.Tensor:
    mask = torch.zeros(width, dtype=torch.long, device=device)
    mask[width - real :] = 1
    return mask


def _pad_time(tensor: torch.Tensor, width: int) -> torch.Tensor:
    """Left-pads a (rows, heads, time, channels) cache tensor with zeros to `width` steps."""
    return F.pad(tensor, (0, 0, width - tensor.shape[2], 0))
