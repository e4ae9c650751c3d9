"""Tiny random-initialised RVC files in the real formats: voice models (`.pth` as community
trainers save them: half-precision weights, weight-norm (g, v) pairs, the config list, `sr`, `f0`,
`version`), FAISS indexes, and HuBERT embedders in the transformers and the fairseq layout."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from rvc.checkpoint import SynthesizerConfig
from rvc.synthesizer import Synthesizer

EMBEDDER_WIDTH = 32  # the tiny embedder's hidden size (v2 voices use it; real HuBERT: 768)
PROJECTED_WIDTH = 16  # its final_proj (v1 voices; real: 256)
_UPSAMPLING = {32000: ([10, 8, 2, 2], [20, 16, 4, 4]), 40000: ([10, 10, 2, 2], [20, 20, 4, 4]),
               48000: ([12, 10, 2, 2], [24, 20, 4, 4])}
_SR_NAMES = {32000: "32k", 40000: "40k", 48000: "48k"}
# Layers RVC trainers wrap in weight_norm; their weights are saved as (weight_g, weight_v).
_WEIGHT_NORMED = re.compile(r"^(dec\.ups\.\d+|dec\.resblocks\.\d+\.convs[12]?\.\d+|"
                            r"flow\.flows\.\d+\.enc\.(in_layers|res_skip_layers)\.\d+|flow\.flows\.\d+\.enc\.cond_layer)"
                            r"\.weight$")


def _split_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        if _WEIGHT_NORMED.match(key):
            prefix = key[: -len(".weight")]
            out[prefix + ".weight_g"] = value.norm(dim=tuple(range(1, value.dim())), keepdim=True)
            out[prefix + ".weight_v"] = value
        else:
            out[key] = value
    return out


def build_tiny_voice(path: Path, version: str = "v2", f0: bool = True, sample_rate: int = 40000,
                     seed: int = 0, full_size: bool = False) -> Path:
    """Writes a random voice model: tiny (v1 expects PROJECTED_WIDTH features, v2 EMBEDDER_WIDTH),
    or with `full_size` the shape community v2 voices have (192 channels, 6 attention layers,
    HiFi-GAN from 512 channels; 768-wide features): the real compute cost, for benchmarks."""
    torch.manual_seed(seed)
    rates, kernels = _UPSAMPLING[sample_rate]
    inter, filt, layers, first, gin, blocks = (
        (192, 768, 6, 512, 256, (3, 7, 11)) if full_size else (16, 32, 2, 32, 8, (3, 5))
    )
    width = (768 if version == "v2" else 256) if full_size else (EMBEDDER_WIDTH if version == "v2" else PROJECTED_WIDTH)
    dilations = [[1, 3, 5]] * len(blocks)
    config_list = [
        1025,
        32,
        inter,
        inter,
        filt,
        2,
        layers,
        3,
        0,
        "1",
        list(blocks),
        dilations,
        rates,
        first,
        kernels,
        2,
        gin,
        sample_rate,
    ]
    config = SynthesizerConfig(
        inter_channels=inter,
        hidden_channels=inter,
        filter_channels=filt,
        n_heads=2,
        n_layers=layers,
        kernel_size=3,
        resblock="1",
        resblock_kernel_sizes=blocks,
        resblock_dilation_sizes=tuple(tuple(d) for d in dilations),
        upsample_rates=tuple(rates),
        upsample_initial_channel=first,
        upsample_kernel_sizes=tuple(kernels),
        speakers=2,
        gin_channels=gin,
        sample_rate=sample_rate,
        content_dim=width,
        f0=f0,
    )
    model = Synthesizer(config)
    weights = {k: v.half() for k, v in _split_weight_norm(model.state_dict()).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "weight": weights,
            "config": config_list,
            "info": "tiny test voice",
            "sr": _SR_NAMES[sample_rate],
            "f0": int(f0),
            "version": version,
        },
        path,
    )
    return path


def build_index(path: Path, width: int, vectors: int = 256, seed: int = 0) -> Path:
    """An IVF index over random features, as RVC's trainer writes one (`IVF<n>,Flat`)."""
    import faiss

    data = np.random.default_rng(seed).standard_normal((vectors, width)).astype(np.float32)
    index = faiss.index_factory(width, "IVF8,Flat")
    index.train(data)
    index.add(data)
    faiss.write_index(index, str(path))
    return path


def _tiny_hubert_config(full_size: bool = False):
    from transformers import HubertConfig

    if full_size:
        return HubertConfig()  # HuBERT base: 768 wide, 12 layers, 512-channel feature extractor
    return HubertConfig(
        hidden_size=EMBEDDER_WIDTH,
        num_hidden_layers=12,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )


def build_tiny_embedder(
    base_dir: Path, name: str = "hubert_base", layout: str = "transformers", seed: int = 0, full_size: bool = False
) -> Path:
    """A 12-layer HuBERT with a final_proj, 32 wide, as `<name>/` (transformers) or `<name>.pt`
    (fairseq: `cfg.model` + `model` weights under fairseq's layer names)."""
    from transformers import HubertModel

    torch.manual_seed(seed)
    config = _tiny_hubert_config(full_size)
    model = HubertModel(config)
    proj = torch.nn.Linear(config.hidden_size, 256 if full_size else PROJECTED_WIDTH)
    base_dir.mkdir(parents=True, exist_ok=True)
    if layout == "transformers":
        from safetensors.torch import save_file

        folder = base_dir / name
        model.save_pretrained(folder)
        weights = {k: v.contiguous() for k, v in model.state_dict().items()}
        weights.update({"final_proj.weight": proj.weight.detach(), "final_proj.bias": proj.bias.detach()})
        save_file(weights, folder / "model.safetensors")
        return folder
    state = {}
    for key, value in model.state_dict().items():
        state[_to_fairseq(key)] = value
    state.update(
        {
            "final_proj.weight": proj.weight.detach(),
            "final_proj.bias": proj.bias.detach(),
            "label_embs_concat": torch.zeros(4, PROJECTED_WIDTH),
        }
    )
    cfg = {
        "model": {
            "_name": "hubert",
            "encoder_layers": 12,
            "encoder_embed_dim": EMBEDDER_WIDTH,
            "encoder_ffn_embed_dim": 64,
            "encoder_attention_heads": 2,
            "conv_feature_layers": "[(16,10,5)] + [(16,3,2)] * 4 + [(16,2,2)] * 2",
            "extractor_mode": "default",
            "conv_pos": 16,
            "conv_pos_groups": 2,
            "final_dim": PROJECTED_WIDTH,
            "layer_norm_first": False,
        }
    }
    path = base_dir / f"{name}.pt"
    torch.save({"cfg": cfg, "model": state, "args": None}, path)
    return path


def _to_fairseq(key: str) -> str:
    """transformers' HubertModel parameter name -> fairseq's (the layout of hubert_base.pt)."""
    key = re.sub(r"^feature_extractor\.conv_layers\.(\d+)\.conv\.", r"feature_extractor.conv_layers.\1.0.", key)
    key = re.sub(r"^feature_extractor\.conv_layers\.(\d+)\.layer_norm\.", r"feature_extractor.conv_layers.\1.2.", key)
    key = key.replace("feature_projection.projection.", "post_extract_proj.")
    key = key.replace("feature_projection.layer_norm.", "layer_norm.")
    key = key.replace("encoder.pos_conv_embed.conv.parametrizations.weight.original0", "encoder.pos_conv.0.weight_g")
    key = key.replace("encoder.pos_conv_embed.conv.parametrizations.weight.original1", "encoder.pos_conv.0.weight_v")
    key = key.replace("encoder.pos_conv_embed.conv.", "encoder.pos_conv.0.")
    key = key.replace(".attention.", ".self_attn.").replace(".feed_forward.intermediate_dense.", ".fc1.")
    key = key.replace(".feed_forward.output_dense.", ".fc2.")
    key = re.sub(r"^(encoder\.layers\.\d+)\.layer_norm\.", r"\1.self_attn_layer_norm.", key)
    return key.replace("masked_spec_embed", "mask_emb")


RVC_VOICES = ["char/char.pth", "narr.pth", "plain/plain.pth"]


def install_rvc_files(root: Path) -> None:
    """The RVC files of a test server root: a v2 pitch-guided 40 kHz voice with an index, a v1
    pitch-guided 48 kHz voice, a v2 32 kHz voice without f0; HuBERT as a transformers folder and
    ContentVec as a fairseq checkpoint."""
    voices, base = root / "models" / "rvc_voices", root / "models" / "rvc_base"
    build_tiny_voice(voices / "char" / "char.pth", "v2", True, 40000, seed=1)
    build_index(voices / "char" / "char_added_IVF8_Flat.index", EMBEDDER_WIDTH)
    build_tiny_voice(voices / "narr.pth", "v1", True, 48000, seed=2)
    build_tiny_voice(voices / "plain" / "plain.pth", "v2", False, 32000, seed=3)
    build_tiny_embedder(base, "hubert_base", "transformers")
    build_tiny_embedder(base, "contentvec_base", "fairseq")


def build_tiny_rmvpe(path: Path, seed: int = 0, full_size: bool = False) -> Path:
    """An RMVPE state dict in the published layout, 2 channels wide instead of 16 (or the full
    16 wide with 4 blocks per stage), in half precision as the distributed file."""
    from rvc.rmvpe import PitchNet

    torch.manual_seed(seed)
    net = PitchNet(width=16, blocks=4) if full_size else PitchNet(width=2, blocks=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}, path)
    return path
