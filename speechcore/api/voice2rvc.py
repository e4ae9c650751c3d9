"""`POST /api/voice2rvc` (§9.4): converts an audio file of the output folder with an RVC voice.
Unlike AllTalk, both paths are confined to the output folder: a plain name, or an absolute path
that lies inside it (what generation responses return as `output_file_path`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ..audio.encode import decode_mono
from ..audio.wav import write_wav
from ..rvc_requests import rvc_voice_off
from ..safe_paths import UnsafeName, resolve_inside
from ..storage import SAFE_FILENAME, TEMP_PREFIX, OutputStore
from ..voice_conversion import VoiceConversion
from .contract_error import ContractError


def status_error(message: str) -> ContractError:
    return ContractError(400, {"status": "error", "message": message})


def detail(status: int, message: str) -> ContractError:
    return ContractError(status, {"detail": message})


def inside_outputs(folder: Path, given: str, field: str) -> Path:
    """`given` as a path inside the output folder; absolute paths only when they lie inside it."""
    root = folder.resolve()
    name = given
    if Path(given).is_absolute():
        try:
            name = Path(given).resolve().relative_to(root).as_posix()
        except ValueError:
            raise detail(400, f"{field} must be a file inside the output folder") from None
    try:
        path = resolve_inside(root, name)
    except UnsafeName as exc:
        raise detail(400, f"{field} must be a file inside the output folder: {exc}") from None
    if path.name.startswith(TEMP_PREFIX):
        raise detail(400, f"{field} must be a file inside the output folder")
    return path


async def voice_to_rvc(rvc: VoiceConversion, store: OutputStore, input_tts_path: str, output_rvc_path: str,
                       pth_name: str, pitch: str, method: str) -> dict[str, object]:
    """Converts a file of the output folder into another one; conversion errors are raised as
    the domain errors they are."""
    if rvc_voice_off(pth_name):
        return {"status": "error", "message": "No RVC voice was specified, or it was Disabled"}
    if not rvc.settings.config.rvc_settings.rvc_enabled:
        raise status_error("RVC is disabled: set rvc_settings.rvc_enabled in the settings first")
    try:
        semitones = int(pitch.strip())
    except ValueError:
        raise detail(400, f"pitch must be a whole number of semitones, not {pitch!r}") from None
    source = inside_outputs(store.folder, input_tts_path, "input_tts_path")
    target = inside_outputs(store.folder, output_rvc_path, "output_rvc_path")
    if target.parent != store.folder.resolve() or not SAFE_FILENAME.fullmatch(target.name):
        raise detail(400, "output_rvc_path must be a plain file name directly in the output folder")
    if not source.is_file():
        raise detail(404, f"input_tts_path {input_tts_path!r} does not exist in the output folder")
    conversion = rvc.request(pth_name, semitones, method)
    assert conversion is not None and rvc.converter is not None  # RVC is on and a voice is named
    try:
        audio = await asyncio.to_thread(decode_mono, str(source))
    except Exception as exc:  # PyAV raises its own error classes for undecodable files
        raise detail(400, f"input_tts_path is not a readable audio file: {exc}") from None
    converted = await rvc.converter.convert_audio(audio, conversion)
    await asyncio.to_thread(store.write_named, target.name, lambda out: write_wav(out, converted.sample_rate,
                                                                                  [converted]))
    return {"status": "success", "output_path": output_rvc_path}
