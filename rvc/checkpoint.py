"""Reading RVC voice model files (`.pth`) without unrestricted unpickling.

A community voice file is a torch pickle of plain data: `weight` (the synthesizer's state dict,
the posterior encoder usually stripped), `config` (the synthesizer's constructor arguments as a
list), `sr` ("32k"/"40k"/"48k" or a number), `f0` (1 when the model is pitch-guided) and
`version` ("v1": 256-dimensional content features, "v2": 768). `torch.load(weights_only=True)`
reads exactly that and refuses any pickled object that would run code."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from speechcore.rvc_requests import VoiceConversionError

_RATES = {"32k": 32000, "40k": 40000, "48k": 48000}
_NORM_PARTS = {".weight_g": "g", ".weight_v": "v",
               ".parametrizations.weight.original0": "g", ".parametrizations.weight.original1": "v"}
_CONFIG_FIELDS = (
    "spec_channels", "segment_size", "inter_channels", "hidden_channels", "filter_channels", "n_heads",
    "n_layers", "kernel_size", "p_dropout", "resblock", "resblock_kernel_sizes", "resblock_dilation_sizes",
    "upsample_rates", "upsample_initial_channel", "upsample_kernel_sizes", "spk_embed_dim", "gin_channels",
    "sample_rate",
)


class MissingWeights(VoiceConversionError):
    """Base weights (embedder, rmvpe) are not in models/rvc_base/."""


class UnsafeCheckpoint(VoiceConversionError):
    """The file holds pickled objects beyond tensors and plain data; it is never loaded."""


@dataclass(frozen=True)
class SynthesizerConfig:
    """The synthesizer's shape, from the checkpoint's `config` list."""

    inter_channels: int
    hidden_channels: int
    filter_channels: int
    n_heads: int
    n_layers: int
    kernel_size: int
    resblock: str
    resblock_kernel_sizes: tuple[int, ...]
    resblock_dilation_sizes: tuple[tuple[int, ...], ...]
    upsample_rates: tuple[int, ...]
    upsample_initial_channel: int
    upsample_kernel_sizes: tuple[int, ...]
    speakers: int
    gin_channels: int
    sample_rate: int
    content_dim: int
    """Width of the content features the model expects (256 for v1, 768 for v2)."""
    f0: bool


@dataclass(frozen=True)
class VoiceCheckpoint:
    config: SynthesizerConfig
    weights: dict[str, torch.Tensor]
    version: str


def sample_rate_of(value: Any) -> int:
    if isinstance(value, str) and value in _RATES:
        return _RATES[value]
    try:
        rate = int(value)
    except (TypeError, ValueError) as exc:
        raise VoiceConversionError(f"unknown sample rate {value!r}") from exc
    if rate not in _RATES.values():
        raise VoiceConversionError(f"unsupported sample rate {rate} (RVC models are 32, 40 or 48 kHz)")
    return rate


def safe_torch_load(path: Path) -> Any:
    """`torch.load` limited to tensors and plain containers."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" not in str(exc):  # no class or function reference: just not a checkpoint
            raise VoiceConversionError(f"{path.name} is not a readable torch checkpoint: {exc}") from exc
        raise UnsafeCheckpoint(f"{path.name} holds pickled objects other than weights and plain data; "
                               "it is not loaded (re-save it with only tensors, numbers and strings)") from exc
    except Exception as exc:  # noqa: BLE001 - torch's restricted unpickler fails on junk bytes in many ways
        raise VoiceConversionError(f"{path.name} is not a readable torch checkpoint: "
                                   f"{type(exc).__name__}: {exc}") from exc


def read_voice_checkpoint(path: Path) -> VoiceCheckpoint:
    data = safe_torch_load(path)
    if not isinstance(data, dict) or not isinstance(data.get("weight"), dict) or "config" not in data:
        raise VoiceConversionError(f"{path.name} is not an RVC voice model (no 'weight' and 'config' entries)")
    weights = {k: v for k, v in data["weight"].items() if not k.startswith("enc_q.")}
    raw = data["config"]
    if isinstance(raw, dict):  # some trainers save the arguments by name
        raw = [raw.get(name) for name in _CONFIG_FIELDS]
    if not isinstance(raw, (list, tuple)) or len(raw) < len(_CONFIG_FIELDS):
        raise VoiceConversionError(f"{path.name} has an unrecognised 'config' entry")
    vocoder = data.get("vocoder", "HiFi-GAN")
    if vocoder != "HiFi-GAN":
        raise VoiceConversionError(f"{path.name} uses the {vocoder} vocoder; only HiFi-GAN models are supported")
    values = dict(zip(_CONFIG_FIELDS, raw))
    try:
        phone = weights["enc_p.emb_phone.weight"]
        speakers = weights["emb_g.weight"].shape[0]
    except KeyError as exc:
        raise VoiceConversionError(f"{path.name} lacks the layer {exc.args[0]}") from None
    f0 = bool(int(data.get("f0", 1)))
    version = str(data.get("version", "v1"))
    config = SynthesizerConfig(
        inter_channels=int(values["inter_channels"]), hidden_channels=int(values["hidden_channels"]),
        filter_channels=int(values["filter_channels"]), n_heads=int(values["n_heads"]),
        n_layers=int(values["n_layers"]), kernel_size=int(values["kernel_size"]),
        resblock=str(values["resblock"]),
        resblock_kernel_sizes=tuple(int(k) for k in values["resblock_kernel_sizes"]),
        resblock_dilation_sizes=tuple(tuple(int(d) for d in ds) for ds in values["resblock_dilation_sizes"]),
        upsample_rates=tuple(int(u) for u in values["upsample_rates"]),
        upsample_initial_channel=int(values["upsample_initial_channel"]),
        upsample_kernel_sizes=tuple(int(k) for k in values["upsample_kernel_sizes"]),
        speakers=int(speakers), gin_channels=int(values["gin_channels"]),
        sample_rate=sample_rate_of(data.get("sr", values["sample_rate"])),
        content_dim=int(phone.shape[1]), f0=f0)
    return VoiceCheckpoint(config=config, weights=weights, version=version)


def fold_weight_norm(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weight-normalised layers saved as (g, v) pairs, old style `weight_g`/`weight_v` or
    parametrized `parametrizations.weight.original0/1`, folded into plain `weight` tensors
    (inference needs no reparametrisation): weight = g * v / |v|, norm over all but dim 0."""
    folded: dict[str, torch.Tensor] = {}
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in weights.items():
        for suffix, part in _NORM_PARTS.items():
            if key.endswith(suffix):
                pairs.setdefault(key[: -len(suffix)], {})[part] = value
                break
        else:
            folded[key] = value
    for prefix, pair in pairs.items():
        if set(pair) != {"g", "v"}:
            raise VoiceConversionError(f"layer {prefix} has half of a weight-norm pair")
        g, v = pair["g"].float(), pair["v"].float()
        dims = tuple(range(1, v.dim()))
        folded[f"{prefix}.weight"] = v * (g / v.norm(dim=dims, keepdim=True))
    return folded
