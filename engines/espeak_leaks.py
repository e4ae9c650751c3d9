"""Two leaks of piper-tts 1.8.0's espeak-ng bridge (`piper.espeakbridge`), stopped without changing
what it phonemizes. Both grow a Piper replica with every text it speaks, for as long as it runs:

- `get_phonemes` keeps one reference too many to each clause it returns (Python objects);
- piper calls `set_voice` before every text, and espeak-ng copies the voice (about 1.3 KB, outside
  Python's allocator) into a command queue that only its audio output ever frees, which phonemizing
  never runs. A 20,000-request soak showed it as a replica growing by about 1 MiB per 1,000 requests
  once malloc's free space was used up. Repeats are skipped; a new initialization of espeak-ng,
  which drops its voice, makes the next voice reach it again.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from collections.abc import Callable

from piper import espeakbridge

_PY_DECREF = ctypes.pythonapi.Py_DecRef
_PY_DECREF.argtypes = [ctypes.py_object]
_PY_DECREF.restype = None


def release_leaked_clauses(get_phonemes: Callable[[str], list]) -> Callable[[str], list]:
    """`get_phonemes` appends each clause it makes to the list it returns without giving up its own
    reference to it (PyList_Append of a new reference). This drops that one extra reference, and only
    from a clause that has it (a fixed bridge is left alone)."""

    def get_phonemes_without_leak(text: str) -> list:
        clauses = get_phonemes(text)
        for clause in clauses:
            # References: the list's, `clause`'s, getrefcount's argument, and the leaked one.
            if sys.getrefcount(clause) > 3:
                _PY_DECREF(clause)
        return clauses

    get_phonemes_without_leak.__wrapped__ = get_phonemes  # type: ignore[attr-defined]
    return get_phonemes_without_leak


def skip_repeated_voice_changes(set_voice: Callable[[str], None]) -> Callable[[str], None]:
    """`set_voice` that passes a voice to espeak-ng only when it differs from the one set last: the
    voice is espeak-ng's own process-wide state, and phonemizing does not change it, so a repeat
    only leaks espeak-ng's copy. A process whose voices speak one espeak language never leaks; one
    that alternates languages leaks once per change."""
    current: str | None = None
    lock = threading.Lock()

    def set_voice_when_changed(voice: str) -> None:
        nonlocal current
        with lock:
            if voice != current:
                set_voice(voice)  # raises on an unknown voice, leaving `current` as it was
                current = voice

    def forget() -> None:
        """espeak-ng was initialized again, which drops its voice: the next one must reach it."""
        nonlocal current
        with lock:
            current = None

    set_voice_when_changed.__wrapped__ = set_voice  # type: ignore[attr-defined]
    set_voice_when_changed.forget = forget  # type: ignore[attr-defined]
    return set_voice_when_changed


def forgetting_the_voice(initialize: Callable[[str], None], forget: Callable[[], None]) -> Callable[[str], None]:
    """`initialize` that makes the voice wrapper forget the voice set last: espeak-ng frees its voice
    when initialized again (piper does it once per process; a test or a second phonemizer may do it
    again), and a voice change skipped after that left espeak-ng phonemizing with a freed voice."""

    def initialize_and_forget(data_dir: str) -> None:
        initialize(data_dir)
        forget()

    initialize_and_forget.__wrapped__ = initialize  # type: ignore[attr-defined]
    return initialize_and_forget


def stop_espeak_leaks() -> None:
    """Patch the bridge once per process (piper looks both functions up on the module at each call)."""
    if not hasattr(espeakbridge.get_phonemes, "__wrapped__"):
        espeakbridge.get_phonemes = release_leaked_clauses(espeakbridge.get_phonemes)
    if not hasattr(espeakbridge.set_voice, "__wrapped__"):
        set_voice = skip_repeated_voice_changes(espeakbridge.set_voice)
        espeakbridge.set_voice = set_voice
        espeakbridge.initialize = forgetting_the_voice(espeakbridge.initialize, set_voice.forget)
