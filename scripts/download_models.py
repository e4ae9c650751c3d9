"""Opt-in download of real Coqui checkpoints into a server root, for machines with internet.
The server itself never downloads anything; run this by hand (needs the coqui extra):

    .venv/bin/python scripts/download_models.py xtts --root .     # XTTS v2.0.3 -> models/xtts/xttsv2_2.0.3
    .venv/bin/python scripts/download_models.py vits --root .     # VCTK VITS  -> models/vits/tts_models--en--vctk--vits

Read the model licences first (XTTS v2: Coqui Public Model License, non-commercial)."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

XTTS_REPO, XTTS_REVISION, XTTS_FOLDER = "coqui/XTTS-v2", "v2.0.3", "xttsv2_2.0.3"
XTTS_FILES = ["config.json", "model.pth", "vocab.json", "speakers_xtts.pth", "mel_stats.pth", "dvae.pth"]
VITS_MODEL, VITS_FOLDER = "tts_models/en/vctk/vits", "tts_models--en--vctk--vits"


def download_xtts(models: Path) -> Path:
    from huggingface_hub import hf_hub_download

    target = models / "xtts" / XTTS_FOLDER
    target.mkdir(parents=True, exist_ok=True)
    for name in XTTS_FILES:
        print(f"downloading {XTTS_REPO}@{XTTS_REVISION}/{name}", flush=True)
        hf_hub_download(XTTS_REPO, name, revision=XTTS_REVISION, local_dir=target)
    return target


def download_vits(models: Path) -> Path:
    from TTS.utils.manage import ModelManager

    target = models / "vits" / VITS_FOLDER
    with tempfile.TemporaryDirectory() as tmp:
        folder, _config, _item = ModelManager(output_prefix=tmp, progress_bar=True).download_model(VITS_MODEL)
        shutil.copytree(folder, target, dirs_exist_ok=True)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=["xtts", "vits"])
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="server root (default: current folder)")
    args = parser.parse_args()
    models = args.root.resolve() / "models"
    target = download_xtts(models) if args.model == "xtts" else download_vits(models)
    print(f"saved in {target}; restart the server (or POST /api/reload) to use it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
