"""§4.6 language detection and mapping, offline."""

import pytest

from speechcore.text.language import LanguageDetectorService, LanguageNotDetected


@pytest.fixture(scope="module")
def detector():
    return LanguageDetectorService()


@pytest.mark.parametrize("text,code", [
    ("The old wizard gazed at the stars and wondered.", "en"),
    ("Le vieux sorcier regardait les étoiles en silence.", "fr"),
    ("El viejo mago miraba las estrellas en silencio.", "es"),
    ("Der alte Zauberer blickte schweigend zu den Sternen.", "de"),
    ("Старый волшебник молча смотрел на звёзды.", "ru"),
    ("Старий чарівник мовчки дивився на зорі та думав.", "ru"),
    ("老巫师静静地凝视着星星。", "zh-cn"),
    ("年老いた魔法使いは静かに星を見つめた。", "ja"),
])
def test_detected_codes_are_mapped_as_the_contract_says(detector, text, code):
    assert detector.detect(text) == code


def test_detection_is_deterministic(detector):
    text = "Ciao, come stai oggi? Spero bene."
    assert {detector.detect(text) for _ in range(5)} == {"it"}


@pytest.mark.parametrize("text", ["12345", "!!! ???", ""])
def test_text_without_letters_cannot_be_detected(detector, text):
    with pytest.raises(LanguageNotDetected, match="Could not detect language"):
        detector.detect(text)
