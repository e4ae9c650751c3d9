"""Content embedders (HuBERT base, ContentVec) on transformers' HubertModel.

Two file layouts are read from models/rvc_base/:
- `<name>/` with config.json and model.safetensors (or pytorch_model.bin): the transformers layout,
  optionally with a `final_proj` layer in the same weights file (needed by v1 voices);
- `<name>.pt`: a fairseq HuBERT checkpoint (AllTalk's `hubert_base.pt`, `contentvec_base.pt`), read
  without unrestricted unpickling and converted to the transformers layout in memory.
v2 voices take the last layer's 768 features; v1 voices take layer 9 through `final_proj` (256)."""

from __future__ import annotations

import argparse
import ast
import logging
import operator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import HubertConfig, HubertModel

from speechcore.rvc_requests import VoiceConversionError

from .checkpoint import MissingWeights, safe_torch_load

FILE_NAMES = {"hubert": "hubert_base", "contentvec": "contentvec_base"}
V1_LAYER = 9
_FAIRSEQ_LAYER_PARTS = {
    "self_attn.q_proj": "attention.q_proj", "self_attn.k_proj": "attention.k_proj",
    "self_attn.v_proj": "attention.v_proj", "self_attn.out_proj": "attention.out_proj",
    "self_attn_layer_norm": "layer_norm", "fc1": "feed_forward.intermediate_dense",
    "fc2": "feed_forward.output_dense", "final_layer_norm": "final_layer_norm",
}


class ContentEmbedder:
    """Speech content features at 50 frames per second from 16 kHz audio."""

    def __init__(self, model: HubertModel, final_proj: nn.Linear | None):
        self.model = model.eval()
        self.final_proj = final_proj.eval() if final_proj is not None else None

    @property
    def widths(self) -> tuple[int, ...]:
        """The feature widths this embedder can give (last layer; projected layer 9)."""
        widths = [self.model.config.hidden_size]
        if self.final_proj is not None:
            widths.append(self.final_proj.out_features)
        return tuple(widths)

    def to(self, device: torch.device) -> "ContentEmbedder":
        self.model.to(device)
        if self.final_proj is not None:
            self.final_proj.to(device)
        return self

    @torch.inference_mode()
    def features(self, audio_16k: np.ndarray, width: int, device: torch.device) -> torch.Tensor:
        """[1, frames, width] for a voice that expects `width`-wide features."""
        values = torch.from_numpy(np.ascontiguousarray(audio_16k, dtype=np.float32))[None].to(device)
        if width == self.model.config.hidden_size:
            return self.model(values).last_hidden_state
        if self.final_proj is not None and width == self.final_proj.out_features:
            layer = min(V1_LAYER, self.model.config.num_hidden_layers)
            hidden = self.model(values, output_hidden_states=True).hidden_states[layer]
            return self.final_proj(hidden)
        raise VoiceConversionError(f"the voice expects {width}-wide content features; this embedder gives "
                                   f"{' or '.join(map(str, self.widths))} (a v1 voice needs an embedder with "
                                   "final_proj)")


def load_embedder(base_dir: Path, name: str) -> ContentEmbedder:
    """`hubert` or `contentvec` from models/rvc_base/ (folder layout first, then fairseq .pt)."""
    stem = FILE_NAMES[name]
    folder, checkpoint = base_dir / stem, base_dir / f"{stem}.pt"
    if (folder / "config.json").is_file():
        return _load_transformers(folder)
    if checkpoint.is_file():
        return _load_fairseq(checkpoint)
    raise MissingWeights(f"the {name} embedder is missing: put {stem}.pt or a transformers folder {stem}/ "
                          "(config.json + model.safetensors) in models/rvc_base")


def _projection(weights: dict[str, torch.Tensor]) -> nn.Linear | None:
    if "final_proj.weight" not in weights:
        return None
    weight = weights["final_proj.weight"]
    layer = nn.Linear(weight.shape[1], weight.shape[0])
    layer.load_state_dict({"weight": weight, "bias": weights["final_proj.bias"]})
    return layer


def _load_transformers(folder: Path) -> ContentEmbedder:
    for filename in ("model.safetensors", "pytorch_model.bin"):
        path = folder / filename
        if path.is_file():
            break
    else:
        raise MissingWeights(f"{folder.name}/ has config.json but no model.safetensors or pytorch_model.bin")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        weights = load_file(path)
    else:
        weights = safe_torch_load(path)
    quiet = logging.getLogger("transformers.modeling_utils")
    level, quiet.level = quiet.level, logging.ERROR  # final_proj is not a HubertModel layer: expected
    try:
        model = HubertModel.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise VoiceConversionError(f"{folder.name}/ is not a loadable HuBERT model: {exc}") from exc
    finally:
        quiet.setLevel(level)
    return ContentEmbedder(model, _projection(weights))


# ----- fairseq checkpoints


_ARITHMETIC = {ast.Add: operator.add, ast.Mult: operator.mul}


def _literal_expression(text: str) -> Any:
    """fairseq's `conv_feature_layers`, e.g. "[(512,10,5)] + [(512,3,2)] * 4": lists, tuples and
    numbers joined by + and * only (never eval)."""
    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
            return _ARITHMETIC[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [value(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        raise ValueError(f"unexpected {type(node).__name__} in {text!r}")
    return value(ast.parse(text, mode="eval").body)


def _fairseq_config(state: dict[str, Any]) -> dict[str, Any]:
    cfg = state.get("cfg")
    if isinstance(cfg, dict) and isinstance(cfg.get("model"), dict):
        return cfg["model"]
    args = state.get("args")
    if isinstance(args, argparse.Namespace):
        return vars(args)
    raise VoiceConversionError("the fairseq checkpoint has no model configuration ('cfg' or 'args')")


def _hubert_config(model_cfg: dict[str, Any]) -> HubertConfig:
    default_layers = "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"
    layers = _literal_expression(model_cfg.get("conv_feature_layers", default_layers))
    if model_cfg.get("extractor_mode", "default") != "default" or model_cfg.get("layer_norm_first", False):
        raise VoiceConversionError(
            "only HuBERT base-style checkpoints (group-norm feature extractor, post-norm encoder) are supported"
        )
    return HubertConfig(
        hidden_size=int(model_cfg.get("encoder_embed_dim", 768)),
        num_hidden_layers=int(model_cfg.get("encoder_layers", 12)),
        num_attention_heads=int(model_cfg.get("encoder_attention_heads", 12)),
        intermediate_size=int(model_cfg.get("encoder_ffn_embed_dim", 3072)),
        conv_dim=tuple(c for c, _k, _s in layers),
        conv_kernel=tuple(k for _c, k, _s in layers),
        conv_stride=tuple(s for _c, _k, s in layers),
        conv_bias=bool(model_cfg.get("conv_bias", False)),
        num_conv_pos_embeddings=int(model_cfg.get("conv_pos", 128)),
        num_conv_pos_embedding_groups=int(model_cfg.get("conv_pos_groups", 16)),
        feat_extract_norm="group",
        do_stable_layer_norm=False,
    )


def _fairseq_key(key: str, target: set[str]) -> str | None:
    """The transformers name of a fairseq HuBERT parameter (None: not part of the encoder)."""
    parts = key.split(".")
    if key.startswith("feature_extractor.conv_layers."):
        index, module, param = parts[2], parts[3], parts[-1]
        return f"feature_extractor.conv_layers.{index}.{'conv' if module == '0' else 'layer_norm'}.{param}"
    if key.startswith("post_extract_proj."):
        return "feature_projection.projection." + parts[-1]
    if key.startswith("layer_norm."):
        return "feature_projection.layer_norm." + parts[-1]
    if key.startswith("encoder.pos_conv.0."):
        param = parts[-1]
        if (
            param in ("weight_g", "weight_v")
            and "encoder.pos_conv_embed.conv.parametrizations.weight.original0" in target
        ):
            param = "parametrizations.weight.original0" if param == "weight_g" else "parametrizations.weight.original1"
        return "encoder.pos_conv_embed.conv." + param
    if key.startswith("encoder.layer_norm."):
        return key
    if key.startswith("encoder.layers."):
        layer, rest = parts[2], ".".join(parts[3:-1])
        mapped = _FAIRSEQ_LAYER_PARTS.get(rest)
        return f"encoder.layers.{layer}.{mapped}.{parts[-1]}" if mapped else None
    if key == "mask_emb":
        return "masked_spec_embed"
    return None


def _load_fairseq(path: Path) -> ContentEmbedder:
    with torch.serialization.safe_globals([argparse.Namespace]):
        state = safe_torch_load(path)
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise VoiceConversionError(f"{path.name} is not a fairseq HuBERT checkpoint (no 'model' weights)")
    model = HubertModel(_hubert_config(_fairseq_config(state)))
    target = set(model.state_dict())
    weights: dict[str, torch.Tensor] = {}
    for key, value in state["model"].items():
        mapped = _fairseq_key(key, target)
        if mapped is not None:
            weights[mapped] = value
    missing = target - set(weights)
    if missing:
        raise VoiceConversionError(f"{path.name} lacks HuBERT layers: {', '.join(sorted(missing)[:5])}")
    model.load_state_dict(weights)
    return ContentEmbedder(model, _projection(state["model"]))
