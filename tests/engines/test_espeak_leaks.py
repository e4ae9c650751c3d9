"""The espeak-ng bridge of piper-tts, patched by engines.espeak_leaks when a PiperEngine is made:
phonemizing, as a Piper replica does for every text, leaves nothing behind, and says the same."""

import ctypes
import gc
import sys
import tracemalloc
from pathlib import Path

import pytest
from piper import espeakbridge
from piper.phonemize_espeak import EspeakPhonemizer

from engines.base import EngineOptions
from engines.espeak_leaks import skip_repeated_voice_changes
from engines.piper import BUNDLED_VOICE, PiperEngine
from tests.support import in_child


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _malloc_in_use() -> int:
    """Bytes malloc has handed out and not had back (glibc's mallinfo2): memory that tracemalloc,
    which sees only Python's allocators, does not."""
    mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    mallinfo2.restype = _MallInfo2
    return mallinfo2().uordblks


@pytest.fixture(scope="module")
def voice():
    return PiperEngine(Path("/nonexistent"), EngineOptions(threads=1)).load_voice(BUNDLED_VOICE)


def test_a_clause_is_freed_with_its_list():
    """The bridge keeps a reference too many to each clause it returns; phonemizing a thousand texts
    must leave no Python object behind (measured in a process of its own)."""
    references, grown = in_child(_clause_references_and_growth)
    assert references == [3, 3, 3]  # the list's, `clause`'s, the argument's
    assert grown < 20_000, grown  # unpatched: about 200 KB


def _clause_references_and_growth() -> tuple[list[int], int]:
    PiperEngine(Path("/nonexistent"), EngineOptions())
    EspeakPhonemizer()  # initializes espeak-ng, as loading a voice does
    espeakbridge.set_voice("en-us")
    clauses = espeakbridge.get_phonemes("One clause, and another. A second sentence!")
    references = [sys.getrefcount(clause) for clause in clauses]
    del clauses
    tracemalloc.start()
    try:
        espeakbridge.get_phonemes("warm up.")
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(1000):
            espeakbridge.get_phonemes(f"Sentence number {i} is spoken, and then dropped.")
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return references, grown


def test_phonemizing_leaves_no_native_memory_behind():
    """piper sets espeak-ng's voice before every text, and espeak-ng keeps a copy of the voice
    (about 1.3 KB) each time: 2,000 texts grew malloc's heap by 2.7 MB, and a soak's replica by
    about 1 MiB per 1,000 requests. With repeats skipped, the heap stays where it was (measured in
    a process of its own: other threads' allocations would count too)."""
    if not hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2"):
        pytest.skip("needs glibc 2.33 or later (mallinfo2)")
    grown = in_child(_native_growth_of_phonemizing)
    assert grown < 200_000, grown


def _native_growth_of_phonemizing() -> int:
    voice = PiperEngine(Path("/nonexistent"), EngineOptions(threads=1)).load_voice(BUNDLED_VOICE)
    voice.phonemize("Warm up.")
    before = _malloc_in_use()
    for i in range(2000):
        voice.phonemize(f"Sentence number {i} is spoken, and then dropped.")
    return _malloc_in_use() - before


def test_each_change_of_voice_still_reaches_espeak():
    """Skipping repeats must not skip a change: English, then German, then English again are each
    phonemized in their own language, and an unknown voice still fails (and changes nothing)."""
    EspeakPhonemizer()
    calls: list[str] = []

    def set_voice(name: str) -> None:
        calls.append(name)
        espeakbridge.set_voice.__wrapped__(name)

    set_voice_when_changed = skip_repeated_voice_changes(set_voice)
    heard = []
    for name in ["en-us", "en-us", "de", "de", "en-us"]:
        set_voice_when_changed(name)
        heard.append(espeakbridge.get_phonemes("Hello Michael")[0][0])
    assert calls == ["en-us", "de", "en-us"]
    assert heard[0] == heard[1] == heard[4] != heard[2] == heard[3]
    with pytest.raises(RuntimeError, match="xx-none"):
        set_voice_when_changed("xx-none")
    set_voice_when_changed("en-us")
    assert calls == ["en-us", "de", "en-us", "xx-none"]  # en-us is still the voice set last


def test_a_language_switch_inside_a_text_leaves_the_voice_as_set(voice):
    """espeak-ng reads a foreign word with that language's rules, then goes back: the voice stays the
    one set, so the next text needs no new set_voice and is phonemized as after a fresh one."""
    espeakbridge.set_voice("fr")
    fresh = espeakbridge.get_phonemes("Bonjour le monde.")
    switched = espeakbridge.get_phonemes("Le weekend à London, thank you.")
    assert "(en)" in switched[0][0]
    assert espeakbridge.get_phonemes("Bonjour le monde.") == fresh
    espeakbridge.set_voice("en-us")
    assert voice.phonemize("Hello.") == [list("həlˈoʊ.")]


def test_a_voice_reaches_espeak_again_after_it_is_initialized_again():
    """espeak-ng drops its voice when initialized again: the next text must set it again (skipped,
    espeak-ng phonemized with a freed voice, and a later text crashed the process now and then)."""
    calls: list[str] = []
    set_voice = skip_repeated_voice_changes(calls.append)
    set_voice("en-us")
    set_voice("en-us")
    set_voice.forget()
    set_voice("en-us")
    assert calls == ["en-us", "en-us"]

    PiperEngine(Path("/nonexistent"), EngineOptions())  # patches the bridge
    assert hasattr(espeakbridge.initialize, "__wrapped__")
    espeakbridge.set_voice("de")
    EspeakPhonemizer()  # initializes espeak-ng again
    espeakbridge.set_voice("de")
    assert espeakbridge.get_phonemes("Hallo Michael")[0][0] != ""
