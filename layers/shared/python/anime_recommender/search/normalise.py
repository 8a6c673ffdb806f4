"""Text normalisation shared by the query parser and the lexical index (one tokenizer for both).

Folding: Unicode NFKD with combining marks dropped, casefolded ('Pokémon' → 'pokemon'); words are
runs of Unicode letters/digits, so Japanese and Cyrillic survive as words of their own script. A
light plural stemmer ('vampires' → 'vampire', 'witches' → 'witch') lets "robots" match "robot"; the
parser's phrases are matched on it. The lexical index goes further (`english_stem`, Snowball's English
stemmer): a plot description and a synopsis seldom share a word's form ("a masked boy" / "a boy wearing a
mask", "touches him" / "touched by a human").
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterator

import Stemmer

_WORD = re.compile(r"\w+", re.UNICODE)

# Function words that carry no topic: dropped from lexical queries and documents, and skipped
# when the parser looks for titles. Kept small on purpose: "no", "not", "without" are negation
# cues for the parser, and words like "like" are title cues, so those are handled there.
STOPWORDS = frozenset(
    """
    a an and are as at be been but by can could did do does doing for from had has have he her his
    i if in into is it its me my of on or our she so some something such than that the their them
    then there these they this those to too very was we were what when where which while who whom
    whose why will with would you your him himself herself itself themselves us
    anime show shows about one ones want looking look find watch
    recommend recommendation please any anything where get gets got
    """.split()
)


# Accents are dropped only from Latin letters: kana voicing marks (ボ = ホ + ゙) are part of the word.
_LATIN_END = 0x250


def fold(text: str) -> str:
    """Lower-case, accent-free text: 'Pokémon: XY!' → 'pokemon: xy!' (punctuation kept)."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    kept: list[str] = []
    base = 0
    for ch in decomposed:
        if unicodedata.combining(ch):
            if base < _LATIN_END:
                continue
        else:
            base = ord(ch)
        kept.append(ch)
    return unicodedata.normalize("NFC", "".join(kept)).casefold()


def stem(word: str) -> str:
    """Strip an English plural: 'robots' → 'robot', 'witches' → 'witch', 'stories' → 'story'."""
    if len(word) <= 3 or not word.isalpha() or not word.isascii():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "sses")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


class _Stemmers(threading.local):
    # PyStemmer's stemmers are not thread-safe (each keeps a cache): one per thread.
    def __init__(self) -> None:
        self.english = Stemmer.Stemmer("english")


_STEMMERS = _Stemmers()


def english_stem(token: str) -> str:
    """Snowball's English stem of a `tokens` token ('masked' → 'mask', 'touches' → 'touch'); tokens of three
    letters or fewer, or with digits or other scripts, stay as they are."""
    if len(token) <= 3 or not token.isascii() or not token.isalpha():
        return token
    stemmed: str = _STEMMERS.english.stemWord(token)
    return stemmed


def words(text: str) -> Iterator[tuple[str, int, int]]:
    """(folded word, start, end) of each word of `fold(text)`; offsets index the folded text."""
    for match in _WORD.finditer(fold(text)):
        token = match.group().replace("_", "")
        if token:
            yield token, match.start(), match.end()


def token_words(text: str) -> list[tuple[str, str]]:
    """(stemmed token, the folded word it came from) of each word of a text that is not a stopword,
    in order, repeats kept."""
    pairs = ((stem(w), w) for w, _, _ in words(text))
    return [(t, w) for t, w in pairs if t not in STOPWORDS]


def tokens(text: str) -> list[str]:
    """The stemmed tokens of `token_words(text)`."""
    return [t for t, _ in token_words(text)]
