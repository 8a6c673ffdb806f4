"""The franchise heuristic and the final ranking's knobs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anime_recommender.catalogue import Anime, AnimeType, Catalogue
from anime_recommender.ranking import (
    COMPONENTS,
    UNKNOWN_PRIOR_QUANTILE,
    Candidate,
    CandidateColumns,
    FranchiseIndex,
    RankingConfig,
    _all_keys,
    _opening,
    catalogue_quality,
    franchise_entries,
    popularity,
    quality,
    rank_candidates,
    relation_guess,
    same_franchise,
    score_arrays,
    spread_franchises,
    title_key,
    title_keys,
)


def _a(aid: int, title: str, members: int | None = 1000, year: int | None = None, **kw: object) -> Anime:
    return Anime(id=aid, title=title, members=members, year=year, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("Naruto", "Naruto: Shippuuden"),
        ("K-On!", "K-On!!"),
        ("Code Geass: Hangyaku no Lelouch", "Code Geass: Hangyaku no Lelouch R2"),
        ("Cowboy Bebop", "Cowboy Bebop: Tengoku no Tobira"),
        ("Fullmetal Alchemist", "Fullmetal Alchemist: Brotherhood"),
        ("Clannad", "Clannad: After Story"),
        ("Shingeki no Kyojin", "Shingeki no Kyojin Season 3 Part 2"),
        ("Hunter x Hunter", "Hunter x Hunter (2011)"),
        ("Gintama", "Gintama'"),
        ("Mob Psycho 100", "Mob Psycho 100 II"),
        ("Fate/Zero", "Fate/stay night"),
        ("Naruto", "Naruto Shippuuden"),  # no colon: linked by the specific word prefix
        (
            "Seishun Buta Yarou wa Bunny Girl Senpai no Yume wo Minai",
            "Seishun Buta Yarou wa Yumemiru Shoujo no Yume wo Minai",
        ),
        ("Neon Genesis Evangelion", "Neon Genesis Evangelion: The End of Evangelion"),
    ],
)
def test_same_franchise_on_real_title_pairs(left: str, right: str) -> None:
    assert same_franchise(_a(1, left), _a(2, right))
    assert same_franchise(_a(2, right), _a(1, left))


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("Cowboy Bebop", "Trigun"),
        ("Re:Zero kara Hajimeru Isekai Seikatsu", "Re:Creators"),
        ("Death Note", "Steins;Gate"),
        ("Love Live! School Idol Project", "Love Hina"),  # shared word "love" is not specific enough
        ("Dr. Stone", "Dr. Slump"),
        ("Kimi no Na wa.", "Kimi no Suizou wo Tabetai"),
        ("Shingeki no Kyojin", "Shingeki no Bahamut: Genesis"),
    ],
)
def test_different_franchises_are_not_merged(left: str, right: str) -> None:
    assert not same_franchise(_a(1, left), _a(2, right))


def test_prefix_link_needs_shared_genres() -> None:
    sequel = _a(2, "Naruto Shippuuden", tags=("action", "adventure", "shounen"))
    assert same_franchise(_a(1, "Naruto", tags=("action", "adventure", "comedy", "shounen")), sequel)
    other = _a(3, "Seishun Buta Yarou wa Bunny Girl Senpai", tags=("romance", "school", "supernatural"))
    assert not same_franchise(_a(4, "Seishun", tags=("music",)), other)
    assert same_franchise(_a(4, "Seishun"), other)  # unknown tags do not veto


def test_title_key_strips_markers_and_keeps_content() -> None:
    assert title_key("Code Geass: Hangyaku no Lelouch R2") == "code geass"
    assert title_key("Hunter x Hunter (2011)") == "hunter x hunter"
    assert title_key("Naruto Movie 1: Dai Katsugeki!!") == "naruto"
    assert title_key("Pokémon") == "pokemon"
    assert title_key("Movie") == "movie"  # nothing left after stripping: keep the title


def test_an_anime_is_not_its_own_sibling_and_synonyms_or_related_link() -> None:
    a = _a(1, "Koukaku Kidoutai", sources=("https://x/1",))
    b = _a(2, "Ghost in the Shell: Stand Alone Complex", synonyms=("Koukaku Kidoutai: Stand Alone Complex",))
    c = _a(3, "Innocence", related=("https://x/1",))
    assert not same_franchise(a, a)
    assert same_franchise(a, b)
    assert same_franchise(a, c) and same_franchise(c, a)


def test_franchise_index_finds_siblings_in_tiny_catalogue(tiny_catalogue: Catalogue) -> None:
    index = FranchiseIndex(tiny_catalogue)
    assert index.siblings(tiny_catalogue.by_id(20)) == [1735]
    assert index.siblings(tiny_catalogue.by_id(1575)) == [2904]
    assert index.siblings(tiny_catalogue.by_id(5680)) == [7791]
    assert index.siblings(tiny_catalogue.by_id(1)) == [5]
    assert index.siblings(tiny_catalogue.by_id(1535)) == []
    # The index agrees with the pairwise rule on every pair.
    for a in tiny_catalogue:
        expected = sorted(b.id for b in tiny_catalogue if same_franchise(a, b))
        assert index.siblings(a) == expected


QUERY = _a(1, "Cowboy Bebop", members=1_000_000, tags=("action", "sci-fi", "space"))


def _cands() -> list[Candidate]:
    return [
        Candidate(_a(10, "Obscure Space Show", members=500), v4=0.80, v3=0.50),
        Candidate(_a(11, "Famous Space Show", members=2_000_000), v4=0.72, v3=0.45),
        Candidate(_a(12, "Cowboy Bebop: Tengoku no Tobira", members=270_000), v4=0.60, v3=0.90),
        Candidate(_a(13, "Title Twin", members=5_000), v4=0.70, v3=0.95),
        Candidate(_a(14, "Acclaimed Show", members=5_000, score=9.1), v4=0.65, v3=0.40),
        Candidate(_a(15, "Same Genres", members=5_000, tags=("action", "sci-fi", "space")), v4=0.62, v3=0.40),
    ]


def _position(config: RankingConfig, aid: int) -> int:
    ranked = rank_candidates(QUERY, _cands(), config, k=10)
    return [r.id for r in ranked].index(aid)


def test_components_sum_to_score_and_query_is_excluded() -> None:
    cands = [*_cands(), Candidate(QUERY, v4=1.0, v3=1.0)]
    ranked = rank_candidates(QUERY, cands, RankingConfig(), k=10)
    assert QUERY.id not in [r.id for r in ranked]
    assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)
    for r in ranked:
        assert set(r.components) == set(COMPONENTS)
        assert r.score == pytest.approx(sum(r.components.values()))


def test_popularity_prior_lifts_the_popular_candidate() -> None:
    plain = RankingConfig(w_v3=0.0, w_tags=0.0, w_popularity=0.0, w_quality=0.0)
    assert _position(plain, 11) > _position(plain, 10)
    with_prior = plain.model_copy(update={"w_popularity": 0.3})
    assert _position(with_prior, 11) < _position(with_prior, 10)


@pytest.mark.parametrize(
    ("knob", "values", "aid"),
    [
        ("w_popularity", (0.0, 0.05, 0.1, 0.2, 0.4, 0.8), 11),
        ("w_v3", (0.0, 0.1, 0.3, 0.6, 1.0, 2.0), 13),
        ("w_quality", (0.0, 0.05, 0.1, 0.2, 0.5, 1.0), 14),
        ("w_tags", (0.0, 0.05, 0.1, 0.2, 0.5, 1.0), 15),
    ],
)
def test_ranking_is_monotonic_in_each_knob(knob: str, values: tuple[float, ...], aid: int) -> None:
    base = RankingConfig(w_v3=0.0, w_tags=0.0, w_popularity=0.0, w_quality=0.0)
    positions = [_position(base.model_copy(update={knob: v}), aid) for v in values]
    assert positions == sorted(positions, reverse=True), positions
    assert positions[-1] < positions[0]


def test_franchise_siblings_never_take_a_slot() -> None:
    # Given the query's movie as the candidate with the highest V3 similarity
    ranked = rank_candidates(QUERY, _cands(), RankingConfig(w_v3=5.0), k=10)
    # Then it is not ranked at all (the API lists it under `franchise`)
    assert 12 not in [r.id for r in ranked] and len(ranked) == len(_cands()) - 1


def test_invalid_candidates_score_minus_infinity() -> None:
    v4 = np.array([[0.9, 0.8, 0.7]])
    valid = np.array([[True, False, True]])
    columns = CandidateColumns(v4, v4, np.zeros_like(v4), np.zeros_like(v4), valid=valid)
    score, comps = score_arrays(RankingConfig(), columns)
    assert np.isneginf(score[0, 1]) and np.isfinite(score[0, [0, 2]]).all()
    assert set(comps) == set(COMPONENTS)


def test_spread_franchises_shows_each_franchise_once_before_repeats() -> None:
    franchise = {1: {2}, 2: {1}, 3: set(), 4: {5}, 5: {4}}
    # 2 repeats 1's franchise: it waits until the distinct franchises run out.
    assert spread_franchises([1, 2, 3, 4, 5], franchise.__getitem__, 3) == [1, 3, 4]
    assert spread_franchises([1, 2, 3, 4, 5], franchise.__getitem__, 5) == [1, 3, 4, 2, 5]
    # Pages cut from longer lists never overlap: the short list is a prefix of the long one.
    assert spread_franchises([1, 2, 3], franchise.__getitem__, 10) == [1, 3, 2]
    assert spread_franchises([1, 2], franchise.__getitem__, 0) == []


@pytest.mark.parametrize(
    ("query", "sibling", "relation"),
    [
        ((AnimeType.TV, 1998), (AnimeType.MOVIE, 2001), "movie"),
        ((AnimeType.MOVIE, 2001), (AnimeType.TV, 1998), "parent story"),
        ((AnimeType.TV, 1998), (AnimeType.SPECIAL, None), "side story"),
        ((AnimeType.TV, 2002), (AnimeType.TV, 2007), "sequel"),
        ((AnimeType.TV, 2007), (AnimeType.TV, 2002), "prequel"),
        ((AnimeType.MOVIE, 2010), (AnimeType.MOVIE, 2012), "sequel"),
        ((AnimeType.TV, None), (AnimeType.TV, 2002), "same franchise"),
        ((AnimeType.TV, 2002), (AnimeType.TV, 2002), "same franchise"),
    ],
)
def test_relation_guess_from_formats_and_release_order(
    query: tuple[AnimeType, int | None], sibling: tuple[AnimeType, int | None], relation: str
) -> None:
    a = _a(1, "Work", type=query[0], year=query[1])
    b = _a(2, "Work 2", type=sibling[0], year=sibling[1])
    assert relation_guess(a, b) == relation


def test_franchise_entries_are_in_release_order_and_bounded() -> None:
    query = _a(1, "Work", type=AnimeType.TV, year=2005)
    siblings = [
        _a(2, "Work Movie", type=AnimeType.MOVIE, year=2008),
        _a(3, "Work Zero", type=AnimeType.TV, year=2001, season="fall"),
        _a(4, "Work Special", type=AnimeType.SPECIAL, year=None),
        _a(5, "Work Zero 2", type=AnimeType.TV, year=2001, season="spring"),
    ]
    entries, total = franchise_entries(query, siblings)
    assert [e.anime.id for e in entries] == [5, 3, 2, 4] and total == 4
    assert [e.relation for e in entries] == ["prequel", "prequel", "movie", "side story"]
    # A long franchise keeps its best-known entries, still in release order.
    many = [_a(10 + i, f"Work {i}", members=i, year=2000 + i) for i in range(30)]
    kept, total = franchise_entries(query, many, limit=5)
    assert total == 30 and [e.anime.id for e in kept] == [35, 36, 37, 38, 39]


def test_year_proximity_prefers_nearby_years_and_ignores_unknown() -> None:
    q = _a(1, "Query", year=2000)
    cands = [
        Candidate(_a(2, "Far", year=1970), v4=0.5, v3=0.5),
        Candidate(_a(3, "Near", year=2001), v4=0.5, v3=0.5),
        Candidate(_a(4, "Unknown", year=None), v4=0.5, v3=0.5),
    ]
    ranked = rank_candidates(q, cands, RankingConfig(w_year=0.2, w_popularity=0.0, w_v3=0.0), k=3)
    assert [r.id for r in ranked][0] == 3
    assert {r.id: r.components["year"] for r in ranked}[4] == 0.0


def test_priors_are_bounded_and_unknown_is_zero() -> None:
    values = popularity(np.array([np.nan, 0, 10, 1e6, 1e9]))
    assert values[0] == 0.0 and values[1] == 0.0
    assert np.all(np.diff(values[1:]) >= 0) and values.max() <= 1.0
    assert quality(np.array([np.nan, 3.0, 7.0, 9.0, 10.0])).tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]


def test_config_rejects_negative_weights_and_unknown_keys() -> None:
    with pytest.raises(ValueError):
        RankingConfig(w_popularity=-1.0)
    with pytest.raises(ValueError):
        RankingConfig.model_validate({"w_typo": 1.0})


def test_rank_candidates_handles_empty_and_duplicates() -> None:
    assert rank_candidates(QUERY, [], k=10) == []
    dup = [_cands()[0], _cands()[0]]
    assert [r.id for r in rank_candidates(QUERY, dup, k=10)] == [10]


def test_sequel_is_never_in_the_list_on_tiny_catalogue(tiny_catalogue: Catalogue) -> None:
    # Given Naruto, with Shippuuden the most similar candidate of all
    query = tiny_catalogue.by_id(20)
    rng = np.random.default_rng(0)
    cands = [Candidate(a, v4=0.5 + 0.3 * float(rng.random()), v3=0.5) for a in tiny_catalogue if a.id != 20]
    cands = [Candidate(c.anime, v4=0.99, v3=0.99) if c.anime.id == 1735 else c for c in cands]
    # And both K-On! seasons next
    cands = [Candidate(c.anime, v4=0.95, v3=0.9) if c.anime.id in (5680, 7791) else c for c in cands]
    similarity_only = RankingConfig(w_v3=0.0, w_tags=0.0, w_popularity=0.0, w_quality=0.0, w_year=0.0)
    ranked = [r.id for r in rank_candidates(query, cands, similarity_only, k=5)]
    # Then the sequel takes no slot, and K-On! takes one slot, not two
    assert 1735 not in ranked and len(ranked) == 5
    assert len({5680, 7791} & set(ranked)) == 1


# Titles that exercise every branch of `title_key`: the batch form must agree with it on each.
TRICKY_TITLES = [
    "",
    " ",
    "!!!",
    "???",
    "-",
    " - ",
    "Re:Zero kara Hajimeru Isekai Seikatsu",
    "Fate/Zero",
    "Fate/stay night",
    "Naruto - Shippuuden",
    "Naruto -Shippuuden-",
    "Mobile Suit Gundam: The 08th MS Team",
    "K-On!!",
    "Hunter x Hunter (2011)",
    "[Oshi no Ko]",
    "(Season 2)",
    "Gintama'",
    "Gintama (2015) Season 2 Part 1",
    "Pokémon: XY",
    "ポケットモンスター",
    "進撃の巨人 Season 3",
    "Kaubôi bibappu",
    "Shin Movie",
    "The Movie",
    "Eiga Doraemon",
    "Season 2",
    "Title\u2028Second line",
    "Tab\tSeparated - Part 2",
    "A\u3000B",
    "x~y",
    "Unclosed (paren: here",
    "Closed] early [2",
    "Lupin III",
    "ONE PIECE FILM RED",
    "2nd Season",
    "s",
    "Ａｎｉｍｅ",
    "Cowboy Bebop: Tengoku no Tobira",
    "Line\nBreak: sub",
    "Dash–Dash — Em",
    "a\r-\rb",
]
_TRICKY_SYNONYMS = ("Kaubôi bibappu", "カウボーイビバップ", "", "Cowboy Bebop: The Movie", "Re:Zero")


def _manami_like() -> list[Anime]:
    # manami-shaped: synonyms (empty ones too), non-ASCII titles, shared sources and `related` links.
    return [
        _a(
            i + 1,
            title,
            synonyms=_TRICKY_SYNONYMS[i % 5 :] if i % 3 else (),
            sources=(f"https://myanimelist.net/anime/{i + 1}",),
            related=(f"https://myanimelist.net/anime/{i + 2}",) if i % 4 == 0 else (),
            tags=("action", "drama") if i % 2 else ("comedy",),
        )
        for i, title in enumerate(TRICKY_TITLES)
    ]


def test_title_keys_equals_title_key_on_tricky_titles() -> None:
    assert title_keys(TRICKY_TITLES) == [title_key(t) for t in TRICKY_TITLES]
    assert title_keys([]) == []


def _reference_franchise_maps(animes: list[Anime]) -> tuple[dict[str, set[int]], dict[str, set[int]]]:
    # The per-anime construction `FranchiseIndex` used before `title_keys`: the key order is compared too.
    by_key: dict[str, set[int]] = {}
    by_opening: dict[str, set[int]] = {}
    for anime in animes:
        for key in _all_keys(anime):
            by_key.setdefault(key, set()).add(anime.id)
            opening = _opening(key)
            if opening is not None:
                by_opening.setdefault(opening, set()).add(anime.id)
    return by_key, by_opening


def _assert_franchise_index_matches_reference(animes: list[Anime]) -> None:
    index = FranchiseIndex(animes)
    by_key, by_opening = _reference_franchise_maps(animes)
    # The tables hold packed id lists (`KeyedIdLists`): compared as the sets they stand for.
    assert [(key, set(ids)) for key, ids in index._by_key.items()] == list(by_key.items())
    assert [(key, set(ids)) for key, ids in index._by_opening.items()] == list(by_opening.items())
    assert index._by_source == {url: a.id for a in animes for url in a.sources}
    assert {url: set(ids) for url, ids in index._listing.items()} == {
        u: {a.id for a in animes if u in a.related} for b in animes for u in b.related
    }


def test_franchise_index_equals_per_anime_construction_on_manami_like_catalogue() -> None:
    _assert_franchise_index_matches_reference(_manami_like())


_REAL_CATALOGUE = Path(__file__).parents[2] / "layers/artifacts/anime-artifacts/catalogue.jsonl.gz"


@pytest.mark.skipif(not _REAL_CATALOGUE.exists(), reason="the built bundle is not in this checkout")
def test_franchise_index_equals_per_anime_construction_on_real_catalogue() -> None:
    animes = list(Catalogue.load(_REAL_CATALOGUE))
    names = [n for a in animes for n in (a.title, *a.synonyms)]
    assert title_keys(names) == [title_key(n) for n in names]
    _assert_franchise_index_matches_reference(animes)


def test_a_label_many_anime_share_or_a_bare_number_makes_no_franchise() -> None:
    # Given 160 unrelated music clips that a story-text file all tags "Minna no Uta", and two unrelated
    # sequels whose only shared synonym is "2"
    clips = [
        Anime(
            id=i, title=f"Clip Song {chr(65 + i % 26)}{i}", type=AnimeType.MUSIC, synonyms=("Minna no Uta",)
        )
        for i in range(1, 161)
    ]
    sequels = [
        Anime(id=500, title="Kaguya-sama wa Kokurasetai", synonyms=("2",)),
        Anime(id=501, title="Haikyuu!!", synonyms=("2",)),
    ]
    saga = [Anime(id=600, title="Shingeki no Kyojin"), Anime(id=601, title="Shingeki no Kyojin Season 2")]
    index = FranchiseIndex([*clips, *sequels, *saga])
    # Then neither the label nor the number links them, and a real franchise still does
    assert index.siblings(clips[0]) == []
    assert index.siblings(sequels[0]) == [] and not same_franchise(sequels[0], sequels[1])
    assert index.siblings(saga[0]) == [601]


def test_search_quality_prior_does_not_treat_an_unscored_anime_as_the_worst() -> None:
    catalogue = Catalogue(
        [Anime(id=i, title=f"T{i}", score=s) for i, s in enumerate([5.0, 6.0, 7.0, 8.0, 9.0, None], start=1)]
    )
    prior = catalogue_quality(catalogue)
    known = quality(catalogue.numbers("score"))[:5]
    assert prior[5] == pytest.approx(np.quantile(known, UNKNOWN_PRIOR_QUANTILE)) and prior[5] > known.min()
    assert list(prior[:5]) == list(known)
