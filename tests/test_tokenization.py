"""FullTokenizer against hand-written expectations on the two bundled vocabularies.

Each expectation was worked out by hand from Google BERT's rules and by looking
the pieces up in the vocabulary files (e.g. `grep -nx token vocab.txt`).
"""

import unicodedata

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


# --- The fast path against a plain reference -----------------------------------------------------
# FullTokenizer's speed comes from a per-character translation table and a per-word cache. The
# reference below applies Google BERT's rules character by character and word by word, with no table
# and no cache, in Google's order: clean, space out CJK ideographs, split on whitespace, lower-case and
# strip accents, split off punctuation, WordPiece. Written from the rules, sharing no code with
# src/tokenization.py.

def reference_category_rules(char):
    """(dropped, whitespace, punctuation, cjk) of one character under Google's definitions."""
    code, category = ord(char), unicodedata.category(char)
    whitespace = char in " \t\n\r" or category == "Zs"
    control = char not in "\t\n\r" and category in ("Cc", "Cf")
    punctuation = 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126 \
        or category.startswith("P")
    cjk = any(low <= code <= high for low, high in (
        (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
        (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)))
    return code in (0, 0xFFFD) or control, whitespace, punctuation, cjk


def reference_tokenize(text, vocab, do_lower_case, max_chars=100):
    cleaned = []
    for char in text:
        dropped, whitespace, _, cjk = reference_category_rules(char)
        if dropped:
            continue
        cleaned.append(" " if whitespace else f" {char} " if cjk else char)
    words = []
    for word in "".join(cleaned).split():
        if do_lower_case:
            word = "".join(c for c in unicodedata.normalize("NFD", word.lower()) if unicodedata.category(c) != "Mn")
        current = ""
        for char in word:
            if reference_category_rules(char)[2]:
                words += [current, char] if current else [char]
                current = ""
            else:
                current += char
        if current:
            words.append(current)
    tokens = []
    for word in words:
        if len(word) > max_chars:
            tokens.append("[UNK]")
            continue
        pieces, start = [], 0
        while start < len(word):
            match = next((piece for end in range(len(word), start, -1)
                          for piece in [word[start:end] if start == 0 else "##" + word[start:end]]
                          if piece in vocab), None)
            if match is None:
                pieces = ["[UNK]"]
                break
            pieces.append(match)
            start += len(match) - (2 if start else 0)
        tokens += pieces
    return tokens


@pytest.mark.parametrize("corpus, vocab_file, do_lower_case", [
    ("data/corpus/zh_sample.txt", CHINESE, True),
    ("data/corpus/en_sample.txt", UNCASED, True),
    ("data/corpus/en_sample.txt", UNCASED, False),    # the cased path: no lower-casing, accents kept
])
def test_fast_path_equals_the_reference_on_the_bundled_corpora(corpus, vocab_file, do_lower_case):
    tokenizer = FullTokenizer(vocab_file, do_lower_case=do_lower_case)
    with open(corpus, encoding="utf-8") as f:
        lines = f.read().splitlines()
    different = [line for line in lines
                 if tokenizer.tokenize(line) != reference_tokenize(line, tokenizer.vocab, do_lower_case)]
    assert len(lines) > 1000 and not different, different[:3]
