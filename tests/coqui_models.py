"""Tiny random-initialised Coqui models in the real folder layouts, built from coqui-tts's own
config classes and saved the way checkpoints are saved, so the engines load them through the same
code as real ones. Their audio is noise; shapes, rates, speakers, streaming and errors are real.
The XTTS file is about 95 MB (its vocoder and speaker encoder do not shrink through the config):
it is built at test time, never committed."""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from TTS.tts.configs.vits_config import VitsArgs, VitsConfig
from TTS.tts.configs.xtts_config import XttsArgs, XttsConfig
from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer
from TTS.tts.models.vits import Vits
from TTS.tts.models.xtts import Xtts

VITS_SPEAKERS = ["p225", "p226", "p227"]
XTTS_LANGUAGES = [
    "en",
    "es",
    "fr",
    "de",
    "it",
    "pt",
    "pl",
    "tr",
    "ru",
    "nl",
    "cs",
    "ar",
    "zh-cn",
    "hu",
    "ko",
    "ja",
    "hi",
]


def build_tiny_vits(
    folder: Path, speakers: list[str] | None = VITS_SPEAKERS, sample_rate: int = 16000, full_size: bool = False
) -> Path:
    """A VITS folder: config.json, model_file.pth and (multi-speaker) speaker_ids.json. `full_size`
    keeps coqui's default VITS architecture (the shape of its released models) for speed measurements."""
    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    if full_size:
        args = VitsArgs(init_discriminator=False)
    else:
        args = VitsArgs(
            hidden_channels=16,
            hidden_channels_ffn_text_encoder=32,
            num_layers_text_encoder=1,
            num_layers_flow=1,
            num_layers_posterior_encoder=1,
            init_discriminator=False,
            resblock_type_decoder="2",
            resblock_kernel_sizes_decoder=[3],
            resblock_dilation_sizes_decoder=[[1, 3]],
            upsample_rates_decoder=[8, 8, 4],
            upsample_initial_channel_decoder=32,
            upsample_kernel_sizes_decoder=[16, 16, 8],
        )
    if speakers:
        (folder / "speaker_ids.json").write_text(json.dumps({name: i for i, name in enumerate(speakers)}))
        args.use_speaker_embedding = True
        args.speaker_embedding_channels = 16
        args.speakers_file = str(folder / "speaker_ids.json")
    config = VitsConfig(model_args=args, use_phonemes=False, text_cleaner="basic_cleaners")
    config.audio.sample_rate = sample_rate
    model = Vits(config)
    torch.save({"model": model.state_dict()}, folder / "model_file.pth")
    if speakers:
        config.model_args.speakers_file = "/home/training/run-1/speakers.json"  # where training ran
    config.save_json(str(folder / "config.json"))
    return folder


def _tiny_vocab(path: Path) -> None:
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(
        vocab_size=256,
        special_tokens=["[STOP]", "[UNK]", "[SPACE]", "[START]"] + [f"[{x}]" for x in XTTS_LANGUAGES],
        initial_alphabet=list(string.ascii_lowercase + string.digits + ".,;:!?'-\"") + list("àáâäçèéêëìíîïñòóôöùúûüß"),
    )
    tokenizer.train_from_iterator(
        ["the quick brown fox jumps over the lazy dog", "hello world this is a test"], trainer
    )
    tokenizer.save(str(path))


def build_tiny_xtts(folder: Path, max_audio_tokens: int = 24, full_size: bool = False) -> Path:
    """An XTTS folder: config.json, model.pth, vocab.json. `max_audio_tokens` bounds how much audio
    one sentence can become (random weights rarely emit the stop token). `full_size` keeps the
    real XTTS v2 architecture (30 GPT layers, 1024 channels; about 1.8 GB) for speed measurements."""
    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    _tiny_vocab(folder / "vocab.json")
    config = XttsConfig()
    if full_size:
        config.model_args = XttsArgs(gpt_max_audio_tokens=max_audio_tokens)
    else:
        config.model_args = XttsArgs(
            gpt_layers=1,
            gpt_n_model_channels=64,
            gpt_n_heads=2,
            decoder_input_dim=64,
            gpt_max_audio_tokens=max_audio_tokens,
            gpt_max_text_tokens=200,
            gpt_max_prompt_tokens=16,
        )
    config.languages = XTTS_LANGUAGES
    model = Xtts(config)
    model.tokenizer = VoiceBpeTokenizer(str(folder / "vocab.json"))
    model.init_models()
    model.eval()  # creates the inference copy of the GPT, whose weights the checkpoint carries too
    torch.save({"model": model.state_dict()}, folder / "model.pth")
    config.save_json(str(folder / "config.json"))
    return folder
