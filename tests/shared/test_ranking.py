"""The franchise heuristic and the final ranking's knobs."""

from __future__ import annotations

import numpy as np
import pytest

from anime_recommender.catalogue import Anime, AnimeType, Catalogue
from anime_recommender.ranking import (
    COMPONENTS,
    Candidate,
    FranchiseIndex,
    RankingConfig,
    popularity,
    quality,
    rank_candidates,
    same_franchise,
    score_arrays,
    title_key,
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
    plain = RankingConfig(w_v3=0.0, w_tags=0.0, w_popularity=0.0, w_quality=0.0, franchise_boost=0.0)
    assert _position(plain, 11) > _position(plain, 10)
    with_prior = plain.model_copy(update={"w_popularity": 0.3})
    assert _position(with_prior, 11) < _position(with_prior, 10)


@pytest.mark.parametrize(
    ("knob", "values", "aid"),
    [
        ("w_popularity", (0.0, 0.05, 0.1, 0.2, 0.4, 0.8), 11),
        ("w_v3", (0.0, 0.1, 0.3, 0.6, 1.0, 2.0), 13),
        ("franchise_boost", (0.0, 0.05, 0.1, 0.2, 0.5, 1.0), 12),
        ("franchise_slots", (0, 1, 2), 12),
        ("w_quality", (0.0, 0.05, 0.1, 0.2, 0.5, 1.0), 14),
        ("w_tags", (0.0, 0.05, 0.1, 0.2, 0.5, 1.0), 15),
    ],
)
def test_ranking_is_monotonic_in_each_knob(knob: str, values: tuple[float, ...], aid: int) -> None:
    base = RankingConfig(
        w_v3=0.0, w_tags=0.0, w_popularity=0.0, w_quality=0.0, franchise_boost=0.5, franchise_slots=0
    )
    if knob == "franchise_slots":
        base = base.model_copy(update={"franchise_boost": 1.0})
    if knob == "franchise_boost":
        base = base.model_copy(update={"franchise_slots": 3})
    positions = [_position(base.model_copy(update={knob: v}), aid) for v in values]
    assert positions == sorted(positions, reverse=True), positions
    assert positions[-1] < positions[0]


def test_franchise_slots_cap_the_boost() -> None:
    v4 = np.array([[0.9, 0.8, 0.7, 0.6]])
    sib = np.array([[False, True, True, True]])
    cfg = RankingConfig(w_v3=0.0, w_popularity=0.0, franchise_boost=1.0, franchise_slots=2)
    score, comps = score_arrays(cfg, v4, v4, np.zeros_like(v4), np.zeros_like(v4), sib)
    # The two best siblings get the boost; the third competes on similarity alone.
    assert comps["franchise"].tolist() == [[0.0, 1.0, 1.0, 0.0]]
    assert np.argsort(-score[0]).tolist() == [1, 2, 0, 3]


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


def test_sequel_stays_in_top_list_on_tiny_catalogue(tiny_catalogue: Catalogue) -> None:
    # Given similarities that rank the sequel last, the franchise boost still keeps it in the top 3.
    query = tiny_catalogue.by_id(20)
    rng = np.random.default_rng(0)
    cands = [
        Candidate(a, v4=0.5 + 0.3 * float(rng.random()), v3=0.5)
        for a in tiny_catalogue
        if a.id not in (20, 1735)
    ]
    cands.append(Candidate(tiny_catalogue.by_id(1735), v4=0.1, v3=0.5))
    ranked = rank_candidates(query, cands, RankingConfig(), k=3)
    assert 1735 in [r.id for r in ranked]
    assert AnimeType.TV == tiny_catalogue.by_id(1735).type
