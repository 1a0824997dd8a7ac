"""BERT's WordPiece tokenizer: the Google BERT algorithm, token for token, made fast.

Two stages, as in Google's `tokenization.py`:

1. Basic tokenization: drop NUL, U+FFFD and control characters; turn whitespace
   into spaces; put spaces around every CJK ideograph; split on whitespace;
   optionally lower-case and strip accents (NFD, drop combining marks); split
   off every punctuation character.
2. WordPiece: greedy longest-match-first against the vocabulary, continuation
   pieces prefixed with `##`; a word with no full match, or longer than
   `max_input_chars_per_word`, becomes `[UNK]`.

Speed comes from two observations, not from a different algorithm. Step 1's
per-character rules depend on the character alone, so they are applied with
`str.translate` through a table filled on first sight of each character; and
everything after the whitespace split depends on the word alone, so each
distinct word is tokenized once and cached.
"""

import unicodedata
from collections.abc import Iterable

from src.errors import UserError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

# Hugging Face's limit; Google's original code uses 200. Longer words become [UNK].
MAX_INPUT_CHARS_PER_WORD = 100

# Cached words are dropped wholesale past this many entries, bounding memory on
# huge corpora while keeping the frequent words' hit rate.
WORD_CACHE_SIZE = 500_000

# CJK Unified Ideographs blocks (and compatibility ideographs), as in Google's
# `_is_chinese_char`. Hangul, Hiragana and Katakana are not in them: they are
# written with spaces and are tokenized like other scripts.
CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
              (0x2B740, 0x2B81F), (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


class VocabularyError(UserError):
    """The vocabulary file is missing or unusable."""


def is_cjk(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in CJK_RANGES)


def is_whitespace(char: str) -> bool:
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def is_control(char: str) -> bool:
    # Tab, newline and carriage return are whitespace, not control characters.
    return char not in "\t\n\r" and unicodedata.category(char) in ("Cc", "Cf")


def is_punctuation(char: str) -> bool:
    # All non-alphanumeric printable ASCII counts ("^", "$", "`" are not
    # Unicode punctuation), plus every Unicode P* category.
    code = ord(char)
    if 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126:
        return True
    return unicodedata.category(char).startswith("P")


class _CharacterTable(dict):
    """`str.translate` table for basic tokenization's per-character rules, filled lazily."""

    def __missing__(self, code):
        char = chr(code)
        if code == 0 or code == 0xFFFD or is_control(char):
            replacement = None            # dropped
        elif is_whitespace(char):
            replacement = " "
        elif is_cjk(char):
            replacement = f" {char} "     # every ideograph is a word of its own
        else:
            replacement = char
        self[code] = replacement
        return replacement


def load_vocab(vocab_file: str) -> dict[str, int]:
    """{token: id} from a file of one token per line; refuses duplicates and missing specials."""
    try:
        with open(vocab_file, encoding="utf-8") as f:
            tokens = [line.strip() for line in f]
    except OSError as error:
        raise VocabularyError(f"{vocab_file}: cannot read vocabulary ({error.strerror})") from None
    except UnicodeDecodeError as error:
        raise VocabularyError(f"{vocab_file}: not UTF-8 ({error.reason} at byte {error.start})") from None
    vocab = {}
    for index, token in enumerate(tokens):
        if token in vocab:
            raise VocabularyError(f"{vocab_file}: line {index + 1}: token {token!r} already on line "
                                  f"{vocab[token] + 1}")
        vocab[token] = index
    missing = [token for token in SPECIAL_TOKENS if token not in vocab]
    if missing:
        raise VocabularyError(f"{vocab_file}: missing special tokens {' '.join(missing)} "
                              f"(a BERT vocabulary needs {' '.join(SPECIAL_TOKENS)})")
    return vocab


class FullTokenizer:
    """Basic tokenization followed by WordPiece.

    Args:
        vocab_file (str): one token per line; the line number is the id.
        do_lower_case (bool): lower-case and strip accents (uncased vocabularies).
        max_input_chars_per_word (int): longer words become `[UNK]`.
    """

    def __init__(self, vocab_file: str, do_lower_case: bool = True,
                 max_input_chars_per_word: int = MAX_INPUT_CHARS_PER_WORD) -> None:
        self.vocab = load_vocab(vocab_file)
        self.inv_vocab = {index: token for token, index in self.vocab.items()}
        self.do_lower_case = do_lower_case
        self.max_input_chars_per_word = max_input_chars_per_word
        self.unk_token = "[UNK]"
        self._characters = _CharacterTable()
        self._word_cache = {}

    def tokenize(self, text: str) -> list[str]:
        """Text -> list of WordPiece tokens."""
        tokens = []
        for word in text.translate(self._characters).split():
            pieces = self._word_cache.get(word)
            if pieces is None:
                pieces = self._tokenize_word(word)
                if len(self._word_cache) >= WORD_CACHE_SIZE:
                    self._word_cache.clear()
                self._word_cache[word] = pieces
            tokens.extend(pieces)
        return tokens

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        unk = self.vocab[self.unk_token]
        return [self.vocab.get(token, unk) for token in tokens]

    def convert_ids_to_tokens(self, ids: Iterable[int]) -> list[str]:
        return [self.inv_vocab[index] for index in ids]

    def _tokenize_word(self, word):
        """One whitespace-separated word -> its WordPiece tokens."""
        if self.do_lower_case:
            word = strip_accents(word.lower())
        pieces = []
        for part in split_on_punctuation(word):
            pieces.extend(self._wordpiece(part))
        return tuple(pieces)

    def _wordpiece(self, word):
        """Greedy longest-match-first split of one punctuation-free word."""
        if len(word) > self.max_input_chars_per_word:
            return [self.unk_token]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    break
                end -= 1
            else:
                return [self.unk_token]  # no prefix of the rest is in the vocabulary
            pieces.append(piece)
            start = end
        return pieces


# Basic tokenization's per-character rules do not depend on the vocabulary: one table serves all callers.
_BASIC_CHARACTERS = _CharacterTable()


def basic_tokenize(text: str, do_lower_case: bool = True) -> list[str]:
    """Text -> words after basic tokenization only, no WordPiece (Google's `BasicTokenizer.tokenize`).

    The same stage 1 as `FullTokenizer.tokenize`: cleaned, CJK ideographs spaced,
    optionally lower-cased and accent-stripped, punctuation split off.
    """
    words = []
    for word in text.translate(_BASIC_CHARACTERS).split():
        if do_lower_case:
            word = strip_accents(word.lower())
        words.extend(split_on_punctuation(word))
    return words


def strip_accents(text: str) -> str:
    return "".join(char for char in unicodedata.normalize("NFD", text) if unicodedata.category(char) != "Mn")


def split_on_punctuation(text: str) -> list[str]:

    """'a,b!!' -> ['a', ',', 'b', '!', '!']: every punctuation character is its own word."""
    parts, current = [], []
    for char in text:
        if is_punctuation(char):
            if current:
                parts.append("".join(current))
                current = []
            parts.append(char)
        else:
            current.append(char)
    if current:
        parts.append("".join(current))
    return parts
