"""anime_text: the one encoder input format, shared by build and serve."""

from __future__ import annotations

from anime_recommender.catalogue import Anime, AnimeType, Catalogue
from anime_recommender.text import MAX_TOKENS, SYNOPSIS_MAX_WORDS, anime_text, story_snippet


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


# ---- story text ------------------------------------------------------------------------------------


def test_records_without_synopsis_give_the_text_of_version_1() -> None:
    # sha256 of the texts of this synthetic catalogue as `anime_text` wrote them before the synopsis
    # existed (commit b67d90c): the default build's embeddings must not change.
    import hashlib

    from anime_pipeline.synthetic import synthetic_catalogue
    from anime_recommender.text import TEXT_VERSION

    texts = "\n".join(anime_text(a) for a in synthetic_catalogue(3000, seed=7))
    assert hashlib.sha256(texts.encode()).hexdigest()[:16] == "e88bad29fe778f19"
    assert TEXT_VERSION == "1"


def test_the_synopsis_follows_the_head_in_whole_sentences(tiny_catalogue: Catalogue) -> None:
    from anime_recommender.catalogue import with_fields

    story = "Bounty hunters drift through space. They are always broke. " * 20
    text = anime_text(with_fields(tiny_catalogue.by_id(1), synopsis=story))
    head = anime_text(tiny_catalogue.by_id(1))
    assert text.startswith(head + " Bounty hunters drift through space. They are always broke.")
    assert text.endswith(".") and len(text.split()) - len(head.split()) <= SYNOPSIS_MAX_WORDS


def test_a_long_first_sentence_is_cut_at_a_word_and_a_long_head_leaves_less_room() -> None:
    one_sentence = " ".join(f"word{i}" for i in range(200))
    short_head = anime_text(Anime(id=1, title="X", synopsis=one_sentence))
    assert short_head == "X. " + " ".join(f"word{i}" for i in range(SYNOPSIS_MAX_WORDS)) + "..."
    long_title = " ".join(["Kyojin"] * 48)  # ~120 of the 128 pieces: no room left
    assert anime_text(Anime(id=2, title=long_title, synopsis=one_sentence)) == long_title + "."
    assert story_snippet(one_sentence, 10) == " ".join(f"word{i}" for i in range(10)) + "..."


def test_encoder_input_with_synopsis_fits_the_encoders_token_budget() -> None:
    # Sized with the shipped base model's word pieces, so the tokenizer's truncation never has to cut.
    from dataclasses import fields

    from tokenizers import Tokenizer

    from anime_pipeline.models import minilm_model
    from anime_recommender.encoder import EncoderConfig

    assert next(f.default for f in fields(EncoderConfig) if f.name == "max_length") == MAX_TOKENS
    tokenizer = Tokenizer.from_file(str(minilm_model().path / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    anime = Anime(
        id=3,
        title="Shingeki no Kyojin: The Final Season - Kanketsu-hen",
        synonyms=("Attack on Titan: The Final Season - The Final Chapters", "進撃の巨人 The Final Season"),
        type=AnimeType.TV,
        year=2023,
        tags=("action", "drama", "fantasy", "military", "mystery", "shounen", "super power", "gore"),
        synopsis="Humanity lives behind enormous walls to survive the man-eating giants outside. " * 20,
    )
    text = anime_text(anime)
    assert "Humanity lives" in text and len(tokenizer.encode(text).ids) <= MAX_TOKENS
