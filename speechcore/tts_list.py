"""The TTS Generator page's list (`POST /api/save-tts-data`) and subtitles made from it
(`GET /api/srt-generation`), §6B.4–§6B.5. Both files live in the output folder."""

from __future__ import annotations

import json
import re

from .audio.encode import decoded_duration
from .storage import OutputStore
from .wire import JsonBody

LIST_FILE = "ttsList.json"
SRT_FILE = "subtitles.srt"


class TtsListEntry(JsonBody):

    id: int
    fileUrl: str
    text: str
    characterVoice: str
    language: str


def save_tts_list(store: OutputStore, entries: list[TtsListEntry]) -> None:
    data = json.dumps([entry.model_dump() for entry in entries], indent=4, ensure_ascii=False)
    store.write_named(LIST_FILE, lambda out: out.write(data.encode("utf-8")))


def load_tts_list(store: OutputStore) -> list[TtsListEntry] | None:
    path = store.find(LIST_FILE)
    if path is None:
        return None
    return [TtsListEntry.model_validate(item) for item in json.loads(path.read_text(encoding="utf-8"))]


def _timestamp(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{millis:03d}"


def build_srt(store: OutputStore, entries: list[TtsListEntry]) -> str:
    """One cue per entry whose file exists in the output folder (found by the last component of
    its URL), each starting where the previous one ended and lasting as long as its audio."""
    cues, start = [], 0.0
    for entry in entries:
        path = store.find(re.split(r"[\\/]", entry.fileUrl)[-1])
        if path is None:
            continue
        try:
            length = decoded_duration(str(path))
        except Exception:  # an unreadable file is skipped, as the subtitle tool does
            continue
        cues.append(f"{len(cues) + 1}\n{_timestamp(start)} --> {_timestamp(start + length)}\n{entry.text}\n")
        start += length
    return "\n".join(cues)
