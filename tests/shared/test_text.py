"""anime_text: the one encoder input format, shared by build and serve."""

from __future__ import annotations

from anime_recommender.catalogue import Anime, AnimeType, Catalogue
from anime_recommender.text import anime_text


def test_full_record(tiny_catalogue: Catalogue) -> None:
    text = anime_text(tiny_catalogue.by_id(1))
    assert text == "Cowboy Bebop. TV series, 1998. Genres: action, adventure, comedy, drama, sci-fi, space."


def test_synonyms_are_capped_and_title_not_repeated() -> None:
    anime = Anime(
        id=9, title="Shingeki no Kyojin", synonyms=("Shingeki no Kyojin", "Attack on Titan", "AoT", "SnK")
    )
    text = anime_text(anime)
    assert text == "Shingeki no Kyojin. Also known as Attack on Titan; AoT."


def test_unknown_fields_are_left_out(tiny_catalogue: Catalogue) -> None:
    assert anime_text(tiny_catalogue.by_id(40000)) == "Mystery Short Without Data. special. Genres: comedy."
    assert anime_text(Anime(id=3, title="X", type=AnimeType.UNKNOWN, year=2001)) == "X. 2001."
    assert anime_text(Anime(id=4, title=" Bare ")) == "Bare."
