"""RMVPE pitch estimation (a U-Net over a log-mel spectrogram, a bidirectional GRU, 360 pitch
classes 20 cents apart). Weights come from the user's models/rvc_base/rmvpe.pt (a plain state
dict, read with weights_only); the network's widths and depths are read from it, so any model
with the published layout loads. Module names follow that layout."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from speechcore.rvc_requests import VoiceConversionError

from .checkpoint import safe_torch_load

MELS, CLASSES = 128, 360
SAMPLE_RATE, WINDOW, HOP = 16_000, 1024, 160
FIRST_CENTS = 1997.3794084376191  # the lowest class (about 31.7 Hz), then 20-cent steps
THRESHOLD = 0.03
_PADDING_FRAMES = 32  # five 2x poolings


class ConvBlock(nn.Module):
    """Two 3x3 conv + batch-norm + ReLU, with a residual (1x1 conv when the width changes)."""

    def __init__(self, channels_in: int, channels_out: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(channels_in, channels_out, 3, padding=1, bias=False), nn.BatchNorm2d(channels_out), nn.ReLU(),
            nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False), nn.BatchNorm2d(channels_out), nn.ReLU())
        if channels_in != channels_out:
            self.shortcut = nn.Conv2d(channels_in, channels_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + (self.shortcut(x) if hasattr(self, "shortcut") else x)


class EncoderBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, blocks: int, pool: bool):
        super().__init__()
        self.conv = nn.ModuleList(ConvBlock(channels_in if i == 0 else channels_out, channels_out)
                                  for i in range(blocks))
        self.pooled = pool
        if pool:
            self.pool = nn.AvgPool2d(2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for block in self.conv:
            x = block(x)
        return x, (self.pool(x) if self.pooled else x)


class DecoderBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, blocks: int):
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.ConvTranspose2d(channels_in, channels_out, 3, stride=2, padding=1, output_padding=1, bias=False),
            nn.BatchNorm2d(channels_out), nn.ReLU())
        self.conv2 = nn.ModuleList(ConvBlock(channels_out * 2 if i == 0 else channels_out, channels_out)
                                   for i in range(blocks))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = torch.cat((self.conv1(x), skip), dim=1)
        for block in self.conv2:
            x = block(x)
        return x


class _Stack(nn.Module):
    """A named container (`layers`), as the checkpoint nests encoder, intermediate and decoder."""

    def __init__(self, layers: list[nn.Module], bn: int | None = None):
        super().__init__()
        if bn is not None:
            self.bn = nn.BatchNorm2d(bn)
        self.layers = nn.ModuleList(layers)


class UNet(nn.Module):
    def __init__(self, width: int, blocks: int, depth: int = 5, middle: int = 4):
        super().__init__()
        widths = [width * 2 ** i for i in range(depth + 1)]  # 16, 32, ... 512
        self.encoder = _Stack([EncoderBlock(1 if i == 0 else widths[i - 1], widths[i], blocks, True)
                               for i in range(depth)], bn=1)
        self.intermediate = _Stack([EncoderBlock(widths[depth - 1] if i == 0 else widths[depth], widths[depth],
                                                 blocks, False) for i in range(middle)])
        self.decoder = _Stack([DecoderBlock(widths[depth - i], widths[depth - i - 1], blocks) for i in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.encoder.bn(x)
        skips = []
        for layer in self.encoder.layers:
            skip, x = layer(x)
            skips.append(skip)
        for layer in self.intermediate.layers:
            x, _ = layer(x)
        for layer, skip in zip(self.decoder.layers, reversed(skips)):
            x = layer(x, skip)
        return x


class BiGRU(nn.Module):
    def __init__(self, features: int, hidden: int, layers: int):
        super().__init__()
        self.gru = nn.GRU(features, hidden, num_layers=layers, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(x)[0]


class PitchNet(nn.Module):
    def __init__(self, width: int = 16, blocks: int = 4, gru_layers: int = 1):
        super().__init__()
        self.unet = UNet(width, blocks)
        self.cnn = nn.Conv2d(width, 3, 3, padding=1)
        self.fc = nn.Sequential(BiGRU(3 * MELS, 256, gru_layers), nn.Linear(512, CLASSES), nn.Dropout(0.25),
                                nn.Sigmoid())

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """log-mel [b, mels, frames] -> class salience [b, frames, 360]."""
        x = self.cnn(self.unet(mel.transpose(-1, -2).unsqueeze(1)))
        return self.fc(x.transpose(1, 2).flatten(-2))


def shape_of(weights: dict[str, torch.Tensor]) -> tuple[int, int, int]:
    """(first width, conv blocks per stage, GRU layers) read from a state dict."""
    try:
        width = weights["unet.encoder.layers.0.conv.0.conv.0.weight"].shape[0]
    except KeyError:
        raise VoiceConversionError("rmvpe.pt is not an RMVPE model (no unet.encoder layers)") from None
    blocks = len({m.group(1) for k in weights if (m := re.match(r"unet\.encoder\.layers\.0\.conv\.(\d+)\.", k))})
    grus = len({m.group(1) for k in weights if (m := re.match(r"fc\.0\.gru\.weight_ih_l(\d+)$", k))})
    return width, blocks, grus


class RmvpeTracker:
    def __init__(self, path: Path, device: torch.device):
        import librosa

        weights = safe_torch_load(path)
        if not isinstance(weights, dict):
            raise VoiceConversionError("rmvpe.pt is not an RMVPE state dict")
        self.net = PitchNet(*shape_of(weights))
        try:
            self.net.load_state_dict(weights)
        except RuntimeError as exc:
            raise VoiceConversionError(f"rmvpe.pt does not match the RMVPE layout: {exc}") from None
        self.device = device
        self.net.eval().to(device)
        basis = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=WINDOW, n_mels=MELS, fmin=30, fmax=SAMPLE_RATE // 2, htk=True)
        self.mel_basis = torch.from_numpy(basis).float().to(device)
        self.window = torch.hann_window(WINDOW).to(device)
        self.cents = np.pad(20 * np.arange(CLASSES) + FIRST_CENTS, 4)

    def _log_mel(self, audio: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(audio.astype(np.float32)).to(self.device)
        spec = torch.stft(x, WINDOW, HOP, WINDOW, self.window, center=True, return_complex=True).abs()
        return torch.log(torch.clamp(self.mel_basis @ spec, min=1e-5))[None]

    def _decode(self, salience: np.ndarray) -> np.ndarray:
        """Cents as the salience-weighted mean of the 9 classes around each frame's peak."""
        peak = np.argmax(salience, axis=1)
        padded = np.pad(salience, ((0, 0), (4, 4)))
        rows = np.arange(len(salience))[:, None]
        window = peak[:, None] + np.arange(9)[None, :]
        weights = padded[rows, window]
        cents = (weights * self.cents[window]).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        f0 = 10 * 2 ** (cents / 1200)
        f0[salience.max(axis=1) <= THRESHOLD] = 0
        return f0.astype(np.float32)

    @torch.inference_mode()
    def f0(self, audio: np.ndarray) -> np.ndarray:
        """16 kHz audio -> f0 in Hz, 100 frames per second (0 = unvoiced)."""
        mel = self._log_mel(audio)
        frames = mel.shape[-1]
        mel = F.pad(mel, (0, -frames % _PADDING_FRAMES))
        return self._decode(self.net(mel)[0, :frames].float().cpu().numpy())
