"""The RVC synthesizer: content features (+ coarse pitch) -> prior -> flow (reversed) ->
HiFi-GAN decoder, with a harmonic-plus-noise source driving the decoder of pitch-guided models.
Built from a checkpoint's SynthesizerConfig; names match the community state dicts."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from speechcore.rvc_requests import VoiceConversionError

from .checkpoint import SynthesizerConfig, VoiceCheckpoint, fold_weight_norm
from .layers import LRELU_SLOPE, AttentionEncoder, CouplingFlow, ResBlock1, ResBlock2


class ContentEncoder(nn.Module):
    """Projects content features (and the coarse pitch, 1..255) to the prior's mean and log-std."""

    def __init__(self, config: SynthesizerConfig):
        super().__init__()
        self.hidden, self.out_channels = config.hidden_channels, config.inter_channels
        self.emb_phone = nn.Linear(config.content_dim, config.hidden_channels)
        if config.f0:
            self.emb_pitch = nn.Embedding(256, config.hidden_channels)
        self.encoder = AttentionEncoder(config.hidden_channels, config.filter_channels, config.n_heads,
                                        config.n_layers, config.kernel_size)
        self.proj = nn.Conv1d(config.hidden_channels, config.inter_channels * 2, 1)

    def forward(self, content: torch.Tensor, coarse_pitch: torch.Tensor | None,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.emb_phone(content)
        if coarse_pitch is not None:
            x = x + self.emb_pitch(coarse_pitch)
        x = F.leaky_relu(x * math.sqrt(self.hidden), 0.1).transpose(1, 2)
        stats = self.proj(self.encoder(x * mask, mask)) * mask
        return stats[:, :self.out_channels], stats[:, self.out_channels:]


class HarmonicSource(nn.Module):
    """A sine at f0 where voiced, noise where not, merged by a learned linear layer (`l_linear`)."""

    def __init__(self, sample_rate: int, sine_amp: float = 0.1, noise_std: float = 0.003):
        super().__init__()
        self.sample_rate, self.sine_amp, self.noise_std = sample_rate, sine_amp, noise_std
        self.l_linear = nn.Linear(1, 1)

    def forward(self, f0: torch.Tensor, upsample: int) -> torch.Tensor:
        """f0 [b, frames] in Hz -> excitation [b, 1, frames * upsample]."""
        f0 = f0.repeat_interleave(upsample, dim=1).double()
        phase = torch.cumsum(f0 / self.sample_rate, dim=1) % 1.0
        voiced = (f0 > 0).to(torch.float32)
        sine = torch.sin(2 * math.pi * phase).to(torch.float32) * self.sine_amp
        noise_amp = voiced * self.noise_std + (1 - voiced) * self.sine_amp / 3
        sine = sine * voiced + noise_amp * torch.randn_like(sine)
        return torch.tanh(self.l_linear(sine.unsqueeze(-1))).transpose(1, 2)


class Decoder(nn.Module):
    """HiFi-GAN generator; with `sample_rate` given, the neural-source-filter variant that adds the
    harmonic source at every upsampling stage (pitch-guided models)."""

    def __init__(self, config: SynthesizerConfig):
        super().__init__()
        rates, kernels = config.upsample_rates, config.upsample_kernel_sizes
        first = config.upsample_initial_channel
        self.num_kernels = len(config.resblock_kernel_sizes)
        self.upsample = int(np.prod(rates))
        self.conv_pre = nn.Conv1d(config.inter_channels, first, 7, 1, padding=3)
        self.cond = nn.Conv1d(config.gin_channels, first, 1)
        block = ResBlock1 if config.resblock == "1" else ResBlock2
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        self.nsf = config.f0
        if self.nsf:
            self.m_source = HarmonicSource(config.sample_rate)
            self.noise_convs = nn.ModuleList()
        channels = first
        for i, (rate, kernel) in enumerate(zip(rates, kernels)):
            channels = first // (2 ** (i + 1))
            self.ups.append(nn.ConvTranspose1d(first // (2 ** i), channels, kernel, rate, padding=(kernel - rate) // 2))
            for k, d in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes):
                self.resblocks.append(block(channels, k, d))
            if self.nsf:
                if i + 1 < len(rates):
                    stride = int(np.prod(rates[i + 1:]))
                    self.noise_convs.append(nn.Conv1d(1, channels, stride * 2, stride, padding=stride // 2))
                else:
                    self.noise_convs.append(nn.Conv1d(1, channels, 1))
        self.conv_post = nn.Conv1d(channels, 1, 7, 1, padding=3, bias=False)

    def forward(self, x: torch.Tensor, g: torch.Tensor, f0: torch.Tensor | None) -> torch.Tensor:
        source = self.m_source(f0, self.upsample) if self.nsf and f0 is not None else None
        x = self.conv_pre(x) + self.cond(g)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, LRELU_SLOPE))
            if source is not None:
                x = x + self.noise_convs[i](source)
            blocks = self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels]
            x = sum(block(x) for block in blocks) / self.num_kernels
        return torch.tanh(self.conv_post(F.leaky_relu(x)))


class Synthesizer(nn.Module):
    def __init__(self, config: SynthesizerConfig):
        super().__init__()
        self.config = config
        self.enc_p = ContentEncoder(config)
        self.flow = CouplingFlow(config.inter_channels, config.hidden_channels, config.gin_channels)
        self.dec = Decoder(config)
        self.emb_g = nn.Embedding(config.speakers, config.gin_channels)

    @classmethod
    def from_checkpoint(cls, checkpoint: VoiceCheckpoint) -> "Synthesizer":
        model = cls(checkpoint.config)
        result = model.load_state_dict(fold_weight_norm(checkpoint.weights), strict=False)
        if result.missing_keys or result.unexpected_keys:
            missing = ", ".join(result.missing_keys[:5])
            unexpected = ", ".join(result.unexpected_keys[:5])
            raise VoiceConversionError(f"the model's layers do not match an RVC {checkpoint.version} synthesizer "
                                       f"(missing: {missing or 'none'}; unexpected: {unexpected or 'none'})")
        return model.eval()

    @torch.inference_mode()
    def infer(self, content: torch.Tensor, coarse_pitch: torch.Tensor | None, f0: torch.Tensor | None,
              speaker: int = 0, noise_scale: float = 0.66666) -> torch.Tensor:
        """content [1, frames, dim] at 100 frames/s; pitch and f0 [1, frames] -> audio [samples]."""
        frames = content.shape[1]
        mask = torch.ones(1, 1, frames, dtype=content.dtype, device=content.device)
        g = self.emb_g(torch.tensor([speaker], device=content.device)).unsqueeze(-1)
        mean, log_std = self.enc_p(content, coarse_pitch, mask)
        z_p = (mean + torch.exp(log_std) * torch.randn_like(mean) * noise_scale) * mask
        z = self.flow.reverse(z_p, mask, g)
        return self.dec(z * mask, g, f0)[0, 0]
