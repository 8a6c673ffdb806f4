"""Synthetic catalogues shaped like the manami anime-offline-database, for benchmarks and tests.

The real manami release has ~37k entries; the teacher benchmark needs 40k of the same shape:
Zipf-distributed tags (a few ubiquitous genres, a long tail of rare themes), years skewed to the
present, the manami type mix, about a quarter without a score, franchises (sequels sharing most
tags), and ~10 % of entries without a MyAnimeList source (so derived ids are exercised).

`synopses=True` adds story text the way a merged MyAnimeList export would (`synthetic_synopsis`):
~85 % of entries, ~600 characters on average, Zipf-distributed words over a vocabulary with a long
tail. It is drawn from its own random stream, so the rest of the catalogue is the same either way.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from anime_recommender.catalogue import Anime, AnimeType, Catalogue
from anime_recommender.loaders import assign_derived_ids, derived_id_key

# Real genre/theme names for the frequent head of the distribution (underscores join words).
_HEAD = tuple(
    dict.fromkeys(
        t.replace("_", " ")
        for t in (
            "comedy action fantasy adventure drama sci-fi romance slice_of_life school shounen "
            "supernatural kids music mecha magic historical seinen ecchi mystery sports shoujo parody "
            "super_power military demons space horror martial_arts harem game psychological police "
            "samurai vampire cars thriller josei isekai idols gore time_travel male_protagonist "
            "female_protagonist manga_adaptation original_work light_novel_adaptation ensemble_cast "
            "coming_of_age tragedy family friendship war robots survival detective cooking boys_love "
            "girls_love reincarnation post-apocalyptic cyberpunk iyashikei workplace delinquents"
        ).split()
    )
)
_TYPES = (
    (AnimeType.TV, 0.28),
    (AnimeType.MOVIE, 0.14),
    (AnimeType.OVA, 0.17),
    (AnimeType.ONA, 0.17),
    (AnimeType.SPECIAL, 0.19),
    (AnimeType.UNKNOWN, 0.05),
)
_SYLLABLES = (
    "ka ki ku ke ko sa shi su se so ta chi tsu te to na ni nu ne no ha hi fu he ho "
    "ma mi mu me mo ya yu yo ra ri ru re ro wa n"
).split()
_SEQUEL = (" 2nd Season", " Movie", " OVA", ": Final Season", " Specials", " II", " Recap")
# The frequent head of story text (function words first, then the nouns and verbs synopses use most);
# a long tail of made-up words follows it in `_story_vocabulary`.
_STORY_HEAD = (
    "the a of and to in his her is with who that for on their an as by from but when he she they "
    "world school girl boy life new must young friends one city day back story help power secret war "
    "family only find soon own years after into where way up all time team begins meet love human "
    "father mother sister brother mysterious village kingdom battle monsters demon magic hero past "
    "future fight save dream journey discovers strange group enemy truth memories ship space planet "
    "students club high beautiful dark night summer death killer detective robot pilot soldier army "
    "mission guild dragon knight princess prince king queen witch spirit gods tournament music band "
    "idol game player ninja samurai sword curse island sea forest tower academy"
).split()


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))).capitalize()


def _episodes(rng: random.Random, anime_type: AnimeType) -> int | None:
    if rng.random() < 0.03:
        return None
    if anime_type is AnimeType.TV:
        return rng.choice((12, 12, 13, 13, 24, 25, 26, 10, 11, 39, 50, 51, 52, 64, 100, 148))
    if anime_type is AnimeType.MOVIE:
        return 1
    if anime_type is AnimeType.ONA:
        return rng.choice((1, 2, 4, 6, 10, 12, 13, 24))
    return rng.randint(1, 6)


def _story_vocabulary(rng: random.Random, size: int) -> tuple[list[str], list[float]]:
    """Story words and their cumulative Zipf weights: the common head, then made-up tail words."""
    tail: dict[str, None] = {}
    while len(tail) < size:
        tail.setdefault(_word(rng).lower(), None)
    words = list(_STORY_HEAD) + list(tail)
    cum: list[float] = []
    total = 0.0
    for rank in range(len(words)):
        total += 1.0 / (rank + 1) ** 1.07
        cum.append(total)
    return words, cum


def synthetic_synopsis(rng: random.Random, title: str, words: list[str], cum: list[float]) -> str:
    """Sentences of 8-24 Zipf-drawn words (~600 characters), now and then naming the title."""
    sentences: list[str] = []
    length = 0
    target = max(120, int(rng.gauss(560, 220)))  # the last sentence overshoots by ~40 on average
    while length < target:
        drawn = rng.choices(words, cum_weights=cum, k=rng.randint(8, 24))
        if rng.random() < 0.2:
            drawn.insert(rng.randrange(len(drawn)), title.split()[0])
        sentence = " ".join(drawn)
        sentences.append(sentence[0].upper() + sentence[1:] + ".")
        length += len(sentence) + 2
    return " ".join(sentences)


def synthetic_catalogue(
    n: int, seed: int = 0, *, without_mal: float = 0.10, synopses: bool = False
) -> Catalogue:
    """A deterministic catalogue of `n` anime with the statistical shape of a manami release.

    Args:
        n: number of anime.
        seed: RNG seed; the same (n, seed) always gives the same catalogue.
        without_mal: fraction of entries with no MyAnimeList source (they get derived ids).
        synopses: give ~85 % of entries story text (`synthetic_synopsis`); nothing else changes.
    """
    rng = random.Random(seed)
    vocab = list(_HEAD) + [f"theme {i:04d}" for i in range(max(500, n // 20))]
    weights = [1.0 / (rank + 1) ** 1.05 for rank in range(len(vocab))]
    cum: list[float] = []
    total = 0.0
    for w in weights:
        total += w
        cum.append(total)
    years = list(range(1960, 2026))
    year_cum: list[float] = []
    acc = 0.0
    for y in years:
        acc += 2.0 ** ((y - 1960) / 12)
        year_cum.append(acc)
    mal_ids = rng.sample(range(1, max(60_000, 2 * n)), n)

    rows: list[dict[str, Any]] = []
    for i in range(n):
        parent = rows[rng.randrange(len(rows))] if rows and rng.random() < 0.2 else None
        anime_type = rng.choices([t for t, _ in _TYPES], weights=[w for _, w in _TYPES])[0]
        if parent is not None:
            title = parent["title"] + rng.choice(_SEQUEL)
            keep = [t for t in parent["tags"] if rng.random() < 0.85]
            extra = rng.choices(vocab, cum_weights=cum, k=rng.randint(0, 3))
            tags = list(dict.fromkeys(keep + extra))
            year = None if parent["year"] is None else min(2025, parent["year"] + rng.randint(0, 4))
        else:
            title = f"{_word(rng)} no {_word(rng)}" if rng.random() < 0.5 else f"{_word(rng)} {_word(rng)}"
            k = rng.randint(0, 2) if rng.random() < 0.12 else max(1, min(50, int(rng.gauss(11, 6))))
            tags = list(dict.fromkeys(rng.choices(vocab, cum_weights=cum, k=k * 2)))[:k]
            year = None if rng.random() < 0.04 else rng.choices(years, cum_weights=year_cum)[0]
        anilist = f"https://anilist.co/anime/{500_000 + i}"
        anidb = f"https://anidb.net/anime/{100_000 + i}"
        sources = [anidb, anilist]
        mal: int | None = None
        if rng.random() >= without_mal:
            mal = mal_ids[i]
            sources.append(f"https://myanimelist.net/anime/{mal}")
        score = None if rng.random() < 0.28 else round(min(9.3, max(1.5, rng.gauss(6.6, 0.85))), 2)
        status = "FINISHED"
        if year is not None and year >= 2025:
            status = rng.choice(("ONGOING", "UPCOMING", "FINISHED"))
        rows.append(
            {
                "mal": mal,
                "title": title,
                "type": anime_type,
                "tags": tags,
                "year": year,
                "season": None if rng.random() < 0.08 else rng.choice(("winter", "spring", "summer", "fall")),
                "score": score,
                "episodes": _episodes(rng, anime_type),
                "status": status,
                "sources": tuple(sorted(sources)),
                "synonyms": tuple(dict.fromkeys(f"{title} ({_word(rng)})" for _ in range(rng.randint(0, 3)))),
                "related": (parent["sources"][-1],) if parent is not None else (),
                "picture": f"https://cdn.myanimelist.net/images/anime/{i % 13}/{10_000 + i}.jpg",
            }
        )

    if synopses:
        story_rng = random.Random(f"synopses-{seed}")
        story_words, story_cum = _story_vocabulary(story_rng, max(5_000, n // 2))
        for r in rows:
            if story_rng.random() < 0.85:
                r["synopsis"] = synthetic_synopsis(story_rng, r["title"], story_words, story_cum)
    keys = {derived_id_key(r["sources"]) for r in rows if r["mal"] is None}
    derived = assign_derived_ids(k for k in keys if k is not None)
    items: list[Anime] = []
    for r in rows:
        anime_id = r["mal"] if r["mal"] is not None else derived[str(derived_id_key(r["sources"]))]
        items.append(
            Anime(
                id=anime_id,
                title=r["title"],
                type=r["type"],
                synonyms=r["synonyms"],
                episodes=r["episodes"],
                status=r["status"],
                year=r["year"],
                season=r["season"] if r["year"] is not None else None,
                score=r["score"],
                tags=tuple(r["tags"]),
                sources=r["sources"],
                picture=r["picture"],
                related=r["related"],
                thumbnail=r["picture"].replace(".jpg", "t.jpg"),
                duration_s=1440 if r["type"] is AnimeType.TV else None,
                synopsis=r.get("synopsis"),
            )
        )
    return Catalogue(items)


def manami_record(anime: Anime) -> dict[str, Any]:
    """One anime in the manami anime-offline-database schema."""
    score = None
    if anime.score is not None:
        score = {
            "arithmeticGeometricMean": anime.score,
            "arithmeticMean": round(anime.score + 0.01, 2),
            "median": anime.score,
        }
    return {
        "sources": list(anime.sources),
        "title": anime.title,
        "type": anime.type.value if anime.type is not AnimeType.MUSIC else "SPECIAL",
        "episodes": anime.episodes or 0,
        "status": anime.status or "UNKNOWN",
        "animeSeason": {"season": (anime.season or "undefined").upper(), "year": anime.year},
        "picture": anime.picture
        or "https://raw.githubusercontent.com/manami-project/anime-offline-database/master/pics/no_pic.png",
        "thumbnail": anime.thumbnail
        or "https://raw.githubusercontent.com/manami-project/anime-offline-database/master/pics/no_pic_thumbnail.png",
        **({"duration": {"value": anime.duration_s, "unit": "SECONDS"}} if anime.duration_s else {}),
        **({"score": score} if score is not None else {}),
        "synonyms": list(anime.synonyms),
        "studios": [],
        "producers": [],
        "relatedAnime": list(anime.related),
        "tags": list(anime.tags),
    }


_METADATA: dict[str, Any] = {
    "$schema": "https://raw.githubusercontent.com/manami-project/anime-offline-database/refs/tags/2025-01/schemas/anime-offline-database.schema.json",
    "license": {
        "name": "Open Data Commons Open Database License (ODbL) v1.0 + Database Contents License (DbCL) v1.0",
        "url": "https://github.com/manami-project/anime-offline-database/blob/2025-01/LICENSE",
    },
    "repository": "https://github.com/manami-project/anime-offline-database",
    "scoreRange": {"minInclusive": 1.0, "maxInclusive": 10.0},
    "lastUpdate": "2025-01-01",
}


def _jsonl_lines(catalogue: Catalogue, header: bool) -> Iterator[str]:
    if header:
        yield json.dumps(_METADATA, ensure_ascii=False, separators=(",", ":"))
    for anime in catalogue:
        yield json.dumps(manami_record(anime), ensure_ascii=False, separators=(",", ":"))


def write_manami(
    catalogue: Catalogue, path: Path, *, form: str = "json", pretty: bool = True, header: bool = True
) -> Path:
    """Write `catalogue` as a manami release; compressed by suffix (`.gz`, `.zst`, `.zip`).

    Args:
        form: "json" (the `{"data": [...]}` release) or "jsonl" (metadata line, then one anime a line).
        pretty: indent the JSON release (manami ships both pretty and minified).
        header: for JSONL, whether the first line is the metadata object.
    """
    if form == "json":
        doc = {**_METADATA, "data": [manami_record(a) for a in catalogue]}
        text = json.dumps(doc, ensure_ascii=False, indent=2 if pretty else None,
                          separators=None if pretty else (",", ":"))  # fmt: skip
    elif form == "jsonl":
        text = "\n".join(_jsonl_lines(catalogue, header)) + "\n"
    else:
        raise ValueError(f"form must be 'json' or 'jsonl', not {form!r}")
    data = text.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        data = gzip.compress(data, compresslevel=6)
    elif path.suffix == ".zst":
        import zstandard  # build dependency; imported here because only .zst output needs it

        data = zstandard.ZstdCompressor(level=3).compress(data)
    elif path.suffix == ".zip":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(path.stem, data)
        data = buffer.getvalue()
    path.write_bytes(data)
    return path
