"""`language=auto` (§4.6): offline, deterministic detection restricted to the languages the
contract can map, then AllTalk's mapping (uk, bg -> ru; ca -> fr; everything else -> en)."""

from __future__ import annotations

import threading

from lingua import Language, LanguageDetector, LanguageDetectorBuilder

_MAPPED = {
    Language.ENGLISH: "en", Language.SPANISH: "es", Language.FRENCH: "fr", Language.GERMAN: "de",
    Language.ITALIAN: "it", Language.PORTUGUESE: "pt", Language.POLISH: "pl", Language.TURKISH: "tr",
    Language.RUSSIAN: "ru", Language.DUTCH: "nl", Language.CZECH: "cs", Language.ARABIC: "ar",
    Language.CHINESE: "zh-cn", Language.JAPANESE: "ja", Language.HUNGARIAN: "hu", Language.KOREAN: "ko",
    Language.UKRAINIAN: "ru", Language.BULGARIAN: "ru", Language.CATALAN: "fr",
    Language.HINDI: "en",  # detected so that Hindi text is not mistaken for another language; mapped as AllTalk does
}


class LanguageNotDetected(ValueError):
    def __init__(self) -> None:
        super().__init__("Could not detect language")


class LanguageDetectorService:
    """Detects the language of a text. Built lazily (the models load on first use, about 50 MB
    in low-accuracy mode); thread-safe."""

    def __init__(self) -> None:
        self._detector: LanguageDetector | None = None
        self._lock = threading.Lock()

    def _get(self) -> LanguageDetector:
        with self._lock:
            if self._detector is None:
                self._detector = (LanguageDetectorBuilder.from_languages(*_MAPPED)
                                  .with_low_accuracy_mode().build())
            return self._detector

    def detect(self, text: str) -> str:
        """A contract language code for `text`; raises LanguageNotDetected (e.g. digits only)."""
        language = self._get().detect_language_of(text)
        if language is None:
            raise LanguageNotDetected()
        return _MAPPED.get(language, "en")
