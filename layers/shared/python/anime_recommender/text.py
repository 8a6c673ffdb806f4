"""The encoder inputs of an anime (build, delta and serving share them).

`anime_text` is what the V3/V4 vectors of an anime encode (title, type, year, tags, a story snippet);
`story_passage` is its synopsis alone, what the story index (`index_story`, free-text search and the
story part of similar lists) encodes. Catalogue vectors and query vectors must come from the same
text, so nothing else in the code base formats an anime for the encoder.
"""

from __future__ import annotations

import re

from anime_recommender.catalogue import Anime, AnimeType

# Bump when the format changes: embeddings built with another version are stale. A record without
# story text gives the same text as version 1 did, so the story snippet did not need a bump.
TEXT_VERSION = "1"

# The encoder truncates at `EncoderConfig.max_length` = 128 word pieces, [CLS] and [SEP] included.
# The story snippet gets what the head (title, synonyms, type, year, genres) leaves, at most
# `SYNOPSIS_MAX_WORDS`, so the head is never cut and the snippet ends at a sentence we choose rather
# than mid-word. Pieces per word, measured with the shipped MiniLM tokenizer: heads ~2.4 (romaji
# titles and punctuation split finely; 3.1 at the 95th percentile of the default catalogue), English
# story text ~1.3. The tokenizer's own truncation stays the backstop and can only cut the snippet.
MAX_TOKENS = 128
HEAD_PIECES_PER_WORD = 2.5
STORY_PIECES_PER_WORD = 1.4
SYNOPSIS_MAX_WORDS = 60
# Below this many words a snippet says too little to be worth its tokens.
SYNOPSIS_MIN_WORDS = 8
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")

# Synonyms add recall for alternative titles but cost tokens (= latency); two is enough
# to carry the English title of a romaji entry.
MAX_SYNONYMS = 2

_TYPE_WORDS: dict[AnimeType, str] = {
    AnimeType.TV: "TV series",
    AnimeType.MOVIE: "movie",
    AnimeType.OVA: "OVA",
    AnimeType.ONA: "web series",
    AnimeType.SPECIAL: "special",
    AnimeType.MUSIC: "music video",
}


def anime_text(anime: Anime) -> str:
    """Short natural-language description: title, a couple of synonyms, type, year, tags.

    Example: "Cowboy Bebop. TV series, 1998. Genres: action, adventure, sci-fi, space."
    Unknown fields are left out rather than written as placeholders, so they add no noise. A record
    with a `synopsis` gets its opening appended (`story_snippet`, within the encoder's token budget);
    without one the text is exactly what it was before the field existed.
    """
    parts = [anime.title.strip()]
    synonyms = [s.strip() for s in anime.synonyms if s.strip() and s.strip() != anime.title.strip()]
    if anime.title_english:
        # Story text brings an English title and synonyms in many scripts: the English title first,
        # then Latin-script names only (a Korean or Greek title costs tokens the encoder barely reads).
        english = anime.title_english.strip()
        latin = [s for s in synonyms if s.isascii() and s.casefold() != english.casefold()]
        synonyms = ([english] if english.casefold() != parts[0].casefold() else []) + latin
    if synonyms:
        parts.append("Also known as " + "; ".join(synonyms[:MAX_SYNONYMS]))
    kind = _TYPE_WORDS.get(anime.type)
    if kind and anime.year:
        parts.append(f"{kind}, {anime.year}")
    elif kind:
        parts.append(kind)
    elif anime.year:
        parts.append(str(anime.year))
    if anime.tags:
        parts.append("Genres: " + ", ".join(anime.tags))
    head = ". ".join(parts) + "."
    if not anime.synopsis:
        return head
    room = MAX_TOKENS - 2 - HEAD_PIECES_PER_WORD * len(head.split())
    snippet = story_snippet(anime.synopsis, int(room / STORY_PIECES_PER_WORD))
    return f"{head} {snippet}" if snippet else head


def story_snippet(synopsis: str, max_words: int = SYNOPSIS_MAX_WORDS) -> str:
    """The opening of a synopsis in at most `max_words` (capped at `SYNOPSIS_MAX_WORDS`) words.

    Whole sentences while they fit; when even the first does not, its first words and "...". Empty
    when the budget is under `SYNOPSIS_MIN_WORDS` (a long head leaves no useful room).
    """
    budget = min(max_words, SYNOPSIS_MAX_WORDS)
    if budget < SYNOPSIS_MIN_WORDS:
        return ""
    kept: list[str] = []
    used = 0
    for sentence in _SENTENCE_END.split(" ".join(synopsis.split())):
        count = len(sentence.split())
        if used + count > budget:
            break
        kept.append(sentence)
        used += count
    if kept:
        return " ".join(kept)
    first_words = synopsis.split()[:budget]
    return " ".join(first_words).rstrip(",;:-–—") + "..."


#: Words of a synopsis the story passage keeps: about the encoder's 128-piece window of English text.
STORY_PASSAGE_WORDS = 110


def story_passage(anime: Anime) -> str | None:
    """The opening `STORY_PASSAGE_WORDS` words of the synopsis, or None without one.

    Embedded apart from `anime_text`, with no title or genre list around it: a plot description
    searched against it meets the story alone (hit@10 of the 138 own queries, dense only, on the
    27.6k story-text catalogue: 44 % against 23 % for the `anime_text` V3 vectors).
    """
    if not anime.synopsis:
        return None
    return " ".join(anime.synopsis.split()[:STORY_PASSAGE_WORDS])
