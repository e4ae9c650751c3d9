"""Building blocks of the RVC synthesizer (VITS lineage), inference only. Module and parameter
names follow the community checkpoints so their state dicts load as they are; weight-normalised
layers are plain layers here (checkpoint.fold_weight_norm folds the saved pairs)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

LRELU_SLOPE = 0.1


def padding_for(kernel_size: int, dilation: int = 1) -> int:
    return (kernel_size * dilation - dilation) // 2


class ChannelLayerNorm(nn.Module):
    """Layer norm over the channel axis of [batch, channels, time]; parameters `gamma`/`beta`."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.channels, self.eps = channels, eps
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.transpose(1, -1), (self.channels,), self.gamma, self.beta, self.eps)
        return x.transpose(1, -1)


class RelativeAttention(nn.Module):
    """Multi-head self-attention with learned relative position embeddings (window of ±w
    positions, shared by all heads)."""

    def __init__(self, channels: int, n_heads: int, window_size: int = 10):
        super().__init__()
        self.n_heads, self.window_size = n_heads, window_size
        self.k_channels = channels // n_heads
        self.conv_q = nn.Conv1d(channels, channels, 1)
        self.conv_k = nn.Conv1d(channels, channels, 1)
        self.conv_v = nn.Conv1d(channels, channels, 1)
        self.conv_o = nn.Conv1d(channels, channels, 1)
        std = self.k_channels ** -0.5
        self.emb_rel_k = nn.Parameter(torch.randn(1, window_size * 2 + 1, self.k_channels) * std)
        self.emb_rel_v = nn.Parameter(torch.randn(1, window_size * 2 + 1, self.k_channels) * std)

    def _relative_embeddings(self, table: torch.Tensor, length: int) -> torch.Tensor:
        """The 2*length-1 embeddings for offsets -(length-1)..(length-1)."""
        pad = max(length - (self.window_size + 1), 0)
        start = max((self.window_size + 1) - length, 0)
        if pad:
            table = F.pad(table, (0, 0, pad, pad))
        return table[:, start:start + 2 * length - 1]

    @staticmethod
    def _relative_to_absolute(x: torch.Tensor) -> torch.Tensor:
        """[b, h, l, 2l-1] (by offset) -> [b, h, l, l] (by position)."""
        b, h, length, _ = x.shape
        x = F.pad(x, (0, 1)).reshape(b, h, length * 2 * length)
        x = F.pad(x, (0, length - 1)).reshape(b, h, length + 1, 2 * length - 1)
        return x[:, :, :length, length - 1:]

    @staticmethod
    def _absolute_to_relative(x: torch.Tensor) -> torch.Tensor:
        """[b, h, l, l] (by position) -> [b, h, l, 2l-1] (by offset)."""
        b, h, length, _ = x.shape
        x = F.pad(x, (0, length - 1)).reshape(b, h, length * length + length * (length - 1))
        x = F.pad(x, (length, 0)).reshape(b, h, length, 2 * length)
        return x[:, :, :, 1:]

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, channels, length = x.shape
        q, k, v = (conv(x).view(b, self.n_heads, self.k_channels, length).transpose(2, 3)
                   for conv in (self.conv_q, self.conv_k, self.conv_v))
        q = q / math.sqrt(self.k_channels)
        scores = q @ k.transpose(-2, -1)
        rel_k = self._relative_embeddings(self.emb_rel_k, length)
        scores = scores + self._relative_to_absolute(q @ rel_k.unsqueeze(0).transpose(-2, -1))
        scores = scores.masked_fill(mask == 0, -1e4)
        weights = F.softmax(scores, dim=-1)
        out = weights @ v
        rel_v = self._relative_embeddings(self.emb_rel_v, length)
        out = out + self._absolute_to_relative(weights) @ rel_v.unsqueeze(0)
        return self.conv_o(out.transpose(2, 3).reshape(b, channels, length))


class FeedForward(nn.Module):
    def __init__(self, channels: int, filter_channels: int, kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.conv_1 = nn.Conv1d(channels, filter_channels, kernel_size)
        self.conv_2 = nn.Conv1d(filter_channels, channels, kernel_size)

    def _same(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, ((self.kernel_size - 1) // 2, self.kernel_size // 2))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv_1(self._same(x * mask)))
        return self.conv_2(self._same(x * mask)) * mask


class AttentionEncoder(nn.Module):
    def __init__(self, channels: int, filter_channels: int, n_heads: int, n_layers: int, kernel_size: int):
        super().__init__()
        self.attn_layers = nn.ModuleList(RelativeAttention(channels, n_heads) for _ in range(n_layers))
        self.norm_layers_1 = nn.ModuleList(ChannelLayerNorm(channels) for _ in range(n_layers))
        self.ffn_layers = nn.ModuleList(FeedForward(channels, filter_channels, kernel_size) for _ in range(n_layers))
        self.norm_layers_2 = nn.ModuleList(ChannelLayerNorm(channels) for _ in range(n_layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        attn_mask = mask.unsqueeze(2) * mask.unsqueeze(-1)
        x = x * mask
        for attn, norm1, ffn, norm2 in zip(self.attn_layers, self.norm_layers_1, self.ffn_layers, self.norm_layers_2):
            x = norm1(x + attn(x, attn_mask))
            x = norm2(x + ffn(x, mask))
        return x * mask


class WaveNet(nn.Module):
    """Non-causal gated dilated convolutions conditioned on the speaker embedding."""

    def __init__(self, hidden: int, kernel_size: int, dilation_rate: int, n_layers: int, gin_channels: int):
        super().__init__()
        self.hidden, self.n_layers = hidden, n_layers
        self.cond_layer = nn.Conv1d(gin_channels, 2 * hidden * n_layers, 1)
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        for i in range(n_layers):
            dilation = dilation_rate ** i
            self.in_layers.append(nn.Conv1d(hidden, 2 * hidden, kernel_size, dilation=dilation,
                                            padding=padding_for(kernel_size, dilation)))
            self.res_skip_layers.append(nn.Conv1d(hidden, 2 * hidden if i < n_layers - 1 else hidden, 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        output = torch.zeros_like(x)
        cond = self.cond_layer(g)
        for i, (in_layer, res_skip) in enumerate(zip(self.in_layers, self.res_skip_layers)):
            acts = in_layer(x) + cond[:, i * 2 * self.hidden:(i + 1) * 2 * self.hidden]
            acts = torch.tanh(acts[:, :self.hidden]) * torch.sigmoid(acts[:, self.hidden:])
            res = res_skip(acts)
            if i < self.n_layers - 1:
                x = (x + res[:, :self.hidden]) * mask
                output = output + res[:, self.hidden:]
            else:
                output = output + res
        return output * mask


class CouplingLayer(nn.Module):
    """Mean-only affine coupling: one half of the channels shifts the other."""

    def __init__(self, channels: int, hidden: int, kernel_size: int, dilation_rate: int, n_layers: int,
                 gin_channels: int):
        super().__init__()
        self.half = channels // 2
        self.pre = nn.Conv1d(self.half, hidden, 1)
        self.enc = WaveNet(hidden, kernel_size, dilation_rate, n_layers, gin_channels)
        self.post = nn.Conv1d(hidden, self.half, 1)

    def reverse(self, x: torch.Tensor, mask: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        x0, x1 = x[:, :self.half], x[:, self.half:]
        shift = self.post(self.enc(self.pre(x0) * mask, mask, g)) * mask
        return torch.cat([x0, (x1 - shift) * mask], 1)


class Flip(nn.Module):
    def reverse(self, x: torch.Tensor, mask: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return torch.flip(x, [1])


class CouplingFlow(nn.Module):
    """Four coupling layers with channel flips between them (indices 0, 2, 4, 6 hold weights)."""

    def __init__(self, channels: int, hidden: int, gin_channels: int, n_flows: int = 4):
        super().__init__()
        self.flows = nn.ModuleList()
        for _ in range(n_flows):
            self.flows.append(CouplingLayer(channels, hidden, 5, 1, 3, gin_channels))
            self.flows.append(Flip())

    def reverse(self, x: torch.Tensor, mask: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        for flow in reversed(self.flows):
            x = flow.reverse(x, mask, g)
        return x


class ResBlock1(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]):
        super().__init__()
        self.convs1 = nn.ModuleList(nn.Conv1d(channels, channels, kernel_size, dilation=d,
                                              padding=padding_for(kernel_size, d)) for d in dilations)
        self.convs2 = nn.ModuleList(nn.Conv1d(channels, channels, kernel_size, padding=padding_for(kernel_size))
                                    for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c1, c2 in zip(self.convs1, self.convs2):
            x = x + c2(F.leaky_relu(c1(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class ResBlock2(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...]):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv1d(channels, channels, kernel_size, dilation=d,
                                             padding=padding_for(kernel_size, d)) for d in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = x + conv(F.leaky_relu(x, LRELU_SLOPE))
        return x
