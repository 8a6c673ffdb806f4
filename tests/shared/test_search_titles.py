"""Title autocomplete structures (`search/titles.py`)."""

from __future__ import annotations

from anime_recommender.catalogue import Anime, AnimeType
from anime_recommender.search.titles import TitleIndex, normalise, normalise_many


def test_normalise_many_equals_normalise_whatever_the_mix() -> None:
    mixed = ["Pokémon: XY!", "K-On!!", "", "進撃の巨人", "Fate/Zero", "two\nlines", "  Re:Zero  "]
    assert normalise_many(mixed) == [normalise(t) for t in mixed]
    # Only texts that take the per-text path (non-ASCII, a newline): once crashed the batch's zip
    only_slow = ["進撃の巨人", "Pokémon", "a\nb"]
    assert normalise_many(only_slow) == [normalise(t) for t in only_slow]
    assert normalise_many([]) == []


def test_a_catalogue_of_only_non_ascii_titles_builds_and_answers() -> None:
    # Every name takes the per-text path (a cold start on such a catalogue used to raise)
    animes = [
        Anime(id=1, title="Shingeki no Kyojin: Kōhen", type=AnimeType.TV, members=10),
        Anime(id=2, title="Kimetsu no Yaiba – Yūkaku-hen", type=AnimeType.TV, members=20),
    ]
    index = TitleIndex(animes)
    assert [m.anime_id for m in index.search("kimetsu", 5)] == [2]
    assert [m.anime_id for m in index.search("Shingeki no Kyojin Kohen", 5)] == [1]
