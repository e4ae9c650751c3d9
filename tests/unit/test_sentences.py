from speechcore.text.sentences import split_sentences


def test_splits_on_end_marks_and_keeps_them():
    assert split_sentences("One. Two! Three? Four") == ["One.", "Two!", "Three?", "Four"]


def test_whitespace_and_empty_pieces_are_dropped():
    assert split_sentences("  Hello there.   \n\n  ") == ["Hello there."]
    assert split_sentences("") == []


def test_decimal_points_and_cjk():
    assert split_sentences("It costs 2.50 now. 好的。再见！") == ["It costs 2.50 now.", "好的。", "再见！"]
