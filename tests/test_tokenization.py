"""FullTokenizer against hand-written expectations on the two bundled vocabularies.

Each expectation was worked out by hand from Google BERT's rules and by looking
the pieces up in the vocabulary files (e.g. `grep -nx token vocab.txt`).
"""

import pytest

from src.tokenization import FullTokenizer, VocabularyError

UNCASED = "data/vocab/bert-base-uncased-vocab.txt"
CHINESE = "data/vocab/bert-base-chinese-vocab.txt"


@pytest.fixture(scope="module")
def uncased():
    return FullTokenizer(UNCASED, do_lower_case=True)


@pytest.fixture(scope="module")
def chinese():
    return FullTokenizer(CHINESE, do_lower_case=True)


@pytest.mark.parametrize("text, expected", [
    ("Hello, World!", ["hello", ",", "world", "!"]),
    ("Héllo naïve CAFÉ", ["hello", "naive", "cafe"]),                 # lower-case + strip accents
    ("tokenization", ["token", "##ization"]),                         # longest match first
    ("don't", ["don", "'", "t"]),                                     # every punctuation char splits
    ("a\x00b\u200bc\x07d", ["abc", "##d"]),                           # NUL, Cf and Cc dropped, not spaces
    ("a\tb\nc\u00a0d\u3000e", ["a", "b", "c", "d", "e"]),             # tab, newline, Zs are whitespace
    ("中国", ["中", "国"]),                                            # each ideograph its own word
    ("世界你好", ["世", "[UNK]", "[UNK]", "[UNK]"]),                    # only 世 is in this vocab
    ("☃", ["[UNK]"]),                                                 # symbol (So), not in the vocab
    ("a" * 101, ["[UNK]"]),                                           # longer than 100 characters
    ("a" * 100, ["aaa"] + ["##aa"] * 48 + ["##a"]),                   # exactly 100: split normally
    ("   ", []),
])
def test_uncased_vocabulary(uncased, text, expected):
    assert uncased.tokenize(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("你好，世界！", ["你", "好", "，", "世", "界", "！"]),              # full-width punctuation split
    ("BERT是2018年发布的", ["be", "##rt", "是", "2018", "年", "发", "布", "的"]),  # mixed scripts
    ("Café", ["cafe"]),
    # Kana and Hangul are not CJK ideographs: one word each. Accent stripping
    # (NFD, drop Mn) turns が into か and Hangul syllables into their jamo.
    ("ひらがな", ["ひ", "##ら", "##かな"]),
    ("안녕", ["ᄋ", "##ᅡ", "##ᆫ", "##ᄂ", "##ᅧ", "##ᆼ"]),
])
def test_chinese_vocabulary(chinese, text, expected):
    assert chinese.tokenize(text) == expected


def test_cased_tokenization_keeps_case_and_accents():
    cased = FullTokenizer(UNCASED, do_lower_case=False)
    assert cased.tokenize("Hello world") == ["[UNK]", "world"]  # no uppercase pieces in an uncased vocab
    assert cased.tokenize("naïve") == ["[UNK]"]                  # the accent is kept, and no piece has it
    cased_chinese = FullTokenizer(CHINESE, do_lower_case=False)
    assert cased_chinese.tokenize("안녕 ひらがな") == ["[UNK]", "[UNK]"]  # no NFD: whole syllables, が kept


def test_ids_round_trip(uncased):
    tokens = uncased.tokenize("Hello, World!")
    ids = uncased.convert_tokens_to_ids(tokens)
    assert ids == [7592, 1010, 2088, 999]  # line numbers - 1 in the vocabulary file
    assert uncased.convert_ids_to_tokens(ids) == tokens
    assert uncased.convert_tokens_to_ids(["[CLS]", "no-such-token"]) == [101, 100]


def test_cache_gives_the_same_tokens_again(chinese):
    text = "BERT是2018年发布的，BERT是模型。"
    assert chinese.tokenize(text) == chinese.tokenize(text)


def test_vocabulary_errors(tmp_path):
    with pytest.raises(VocabularyError, match="missing.txt: cannot read vocabulary"):
        FullTokenizer(str(tmp_path / "missing.txt"))
    duplicated = tmp_path / "dup.txt"
    duplicated.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nhello\n")
    with pytest.raises(VocabularyError, match=r"dup.txt: line 7: token 'hello' already on line 6"):
        FullTokenizer(str(duplicated))
    no_specials = tmp_path / "plain.txt"
    no_specials.write_text("[PAD]\n[UNK]\nhello\n")
    with pytest.raises(VocabularyError, match=r"plain.txt: missing special tokens \[CLS\] \[SEP\] \[MASK\]"):
        FullTokenizer(str(no_specials))
