"""The one function that turns an anime into encoder input (build and serve share it).

Catalogue vectors and the vectors of "more like this title" queries must come from the
same text, so nothing else in the code base may format an anime for the encoder.
"""

from __future__ import annotations

from anime_recommender.catalogue import Anime, AnimeType

# Bump when the format changes: embeddings built with another version are stale.
TEXT_VERSION = "1"

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
    Unknown fields are left out rather than written as placeholders, so they add no noise.
    """
    parts = [anime.title.strip()]
    synonyms = [s.strip() for s in anime.synonyms if s.strip() and s.strip() != anime.title.strip()]
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
    return ". ".join(parts) + "."
