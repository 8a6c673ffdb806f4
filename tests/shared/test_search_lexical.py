"""The BM25 lexical index: field weighting, filters, save/load, the compact format scoring as bm25s does,
and neither scipy anywhere nor bm25s at serve time."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from anime_recommender.catalogue import Anime, AnimeType, Catalogue
from anime_recommender.search.lexical import (
    K1,
    B,
    LexicalIndex,
    LexicalIndexError,
    build_lexical_index,
    document_tokens,
    row_dtype,
)


@dataclass(frozen=True, slots=True)
class _WithSynopsis(Anime):
    """An `Anime` carrying the optional story text the catalogue record is about to gain."""

    synopsis: str | None = None


@pytest.fixture(scope="module")
def index(tiny_catalogue: Catalogue) -> LexicalIndex:
    return build_lexical_index(tiny_catalogue)


def test_title_words_find_the_title_and_report_matched_terms(index: LexicalIndex) -> None:
    hits = index.search("cowboy bebop", 5)
    assert {h.anime_id for h in hits[:2]} == {1, 5}
    assert hits[0].terms == ("cowboy", "bebop")
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))


def test_title_outweighs_tag_words(tiny_catalogue: Catalogue) -> None:
    # 'magic' is a tag of several anime and the title word of one: the title wins
    catalogue = Catalogue([*tiny_catalogue, Anime(id=99999, title="Magic Academy", members=10)])
    hits = build_lexical_index(catalogue).search("magic", 3)
    assert hits[0].anime_id == 99999


def test_accents_case_and_plurals_fold(tiny_catalogue: Catalogue) -> None:
    catalogue = Catalogue([*tiny_catalogue, Anime(id=99998, title="Pokémon: Vampire Hunter")])
    lexical = build_lexical_index(catalogue)
    assert lexical.search("POKEMON vampires", 1)[0].anime_id == 99998


def test_allowed_rows_filter_as_mask_or_rows(index: LexicalIndex, tiny_catalogue: Catalogue) -> None:
    movie_rows = np.array([r for r, a in enumerate(tiny_catalogue) if a.type is AnimeType.MOVIE])
    mask = np.zeros(len(tiny_catalogue), dtype=bool)
    mask[movie_rows] = True
    for allowed in (mask, movie_rows):
        hits = index.search("cowboy bebop", 5, allowed_rows=allowed)
        assert [h.anime_id for h in hits] == [5]
    with pytest.raises(ValueError, match="shape"):
        index.search("cowboy", 5, allowed_rows=np.ones(3, dtype=bool))


def test_unknown_or_empty_queries_return_nothing(index: LexicalIndex) -> None:
    for text in ("", "the of and", "zzzzqqq", "ロボット", "a" * 10_000):
        assert index.search(text, 10) == []
    assert index.search("cowboy", 0) == []


def test_synopsis_is_indexed_when_the_record_has_one() -> None:
    animes = [
        _WithSynopsis(id=1, title="Alpha", synopsis="A tofu delivery boy races on mountain passes."),
        _WithSynopsis(id=2, title="Beta", synopsis=None),
        Anime(id=3, title="Gamma", tags=("cars",)),
    ]
    lexical = build_lexical_index(Catalogue(animes))
    hits = lexical.search("tofu delivery", 3)
    assert [h.anime_id for h in hits] == [1]
    assert hits[0].terms == tuple(lexical.terms_of(["tofu", "delivery"])) == ("tofu", "deliveri")


def test_save_load_roundtrip(index: LexicalIndex, tmp_path: Path) -> None:
    files = index.save(tmp_path / "lexical")
    assert {f.name for f in files} == {
        "lexical.json",
        "ids.npy",
        "vocab.json",
        "data.npy",
        "indices.npy",
        "indptr.npy",
    }
    loaded = LexicalIndex.load(tmp_path / "lexical")
    for text in ("cowboy bebop", "space drama", "naruto shippuuden", "mecha"):
        assert loaded.search(text, 10) == index.search(text, 10)
    np.testing.assert_array_equal(loaded.ids, index.ids)


def test_load_rejects_missing_or_foreign_folders(tmp_path: Path, index: LexicalIndex) -> None:
    with pytest.raises(LexicalIndexError):
        LexicalIndex.load(tmp_path / "absent")
    index.save(tmp_path / "other")
    (tmp_path / "other" / "lexical.json").write_text('{"format": "something-else", "version": 1}')
    with pytest.raises(LexicalIndexError, match="not a"):
        LexicalIndex.load(tmp_path / "other")


def test_build_save_load_search_without_scipy(tmp_path: Path) -> None:
    # The Lambda layer ships no scipy: with it blocked, bm25s and our index must still work end to end.
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["scipy"] = None
        sys.modules["scipy.sparse"] = None
        from pathlib import Path
        from anime_recommender.catalogue import Anime, Catalogue
        from anime_recommender.search.lexical import LexicalIndex
        cat = Catalogue([Anime(id=1, title="Cowboy Bebop", tags=("space",)), Anime(id=2, title="Naruto")])
        index = LexicalIndex.build(cat)
        index.save(Path({str(tmp_path / "idx")!r}))
        loaded = LexicalIndex.load(Path({str(tmp_path / "idx")!r}))
        assert [h.anime_id for h in loaded.search("bebop space", 5)] == [1]
        assert "scipy" not in {{m.split(".")[0] for m, mod in sys.modules.items() if mod is not None}}
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_scores_are_bm25s_scores_in_half_precision(tiny_catalogue: Catalogue, index: LexicalIndex) -> None:
    # Given bm25s's own index of the same documents (what the build stores, before compaction)
    import bm25s

    vocab: dict[str, int] = {}
    token_ids = [[vocab.setdefault(t, len(vocab)) for t in document_tokens(a)] for a in tiny_catalogue]
    reference = bm25s.BM25(k1=K1, b=B, method="lucene", backend="numpy", csc_backend="numpy")
    reference.index((token_ids, dict(vocab)), show_progress=False)
    # Then every query's scores match bm25s's to float16 precision
    for text in ("cowboy bebop", "space drama", "naruto shippuuden", "mecha", "magic school romance"):
        terms = index.query_terms(text)
        expected = reference.get_scores_from_ids([vocab[t] for t in terms]) if terms else 0.0
        np.testing.assert_allclose(index.scores(terms), expected, rtol=2e-3, atol=1e-3)


def test_stored_arrays_are_compact(index: LexicalIndex, tmp_path: Path) -> None:
    index.save(tmp_path / "lexical")
    assert np.load(tmp_path / "lexical" / "data.npy").dtype == np.float16
    assert np.load(tmp_path / "lexical" / "indices.npy").dtype == np.uint16
    assert np.load(tmp_path / "lexical" / "indptr.npy").dtype == np.int32
    # Row numbers widen only past 65,536 documents
    assert row_dtype(65_536) == np.uint16 and row_dtype(65_537) == np.uint32


def test_more_than_65536_rows_round_trip_as_uint32(tmp_path: Path) -> None:
    # Given an index whose one token is in the last of 70,000 documents
    n = 70_000
    data, indices, indptr = np.array([1.5], np.float16), np.array([n - 1]), np.array([0, 1])
    lexical = LexicalIndex(data, indices, indptr, ["frieren"], np.arange(n, dtype=np.int64) + 1)
    lexical.save(tmp_path / "big")
    loaded = LexicalIndex.load(tmp_path / "big")
    assert np.load(tmp_path / "big" / "indices.npy").dtype == np.uint32
    assert [(h.anime_id, h.score, h.terms) for h in loaded.search("frieren", 3)] == [(n, 1.5, ("frieren",))]


def test_old_bm25s_format_is_refused(index: LexicalIndex, tmp_path: Path) -> None:
    # A bundle from before format 2 (bm25s's files, version 1) loads as a missing component, not as garbage
    index.save(tmp_path / "old")
    (tmp_path / "old" / "lexical.json").write_text('{"format": "anime-lexical-bm25s", "version": 1}')
    with pytest.raises(LexicalIndexError, match="not a"):
        LexicalIndex.load(tmp_path / "old")


def test_inconsistent_arrays_are_refused(index: LexicalIndex, tmp_path: Path) -> None:
    index.save(tmp_path / "bad")
    indptr = np.load(tmp_path / "bad" / "indptr.npy")
    np.save(tmp_path / "bad" / "indptr.npy", indptr[:-1])
    with pytest.raises(LexicalIndexError, match="column pointers"):
        LexicalIndex.load(tmp_path / "bad")


def test_loading_and_querying_never_import_bm25s(index: LexicalIndex, tmp_path: Path) -> None:
    # The API's cold start: importing the module, loading a saved index and searching it
    index.save(tmp_path / "idx")
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from anime_recommender.search.lexical import LexicalIndex
        loaded = LexicalIndex.load(Path({str(tmp_path / "idx")!r}))
        assert loaded.search("cowboy bebop", 5), "no hits"
        loaded.scores(loaded.query_terms("space drama"))
        imported = {{m.split(".")[0] for m, mod in sys.modules.items() if mod is not None}}
        print(sorted(imported & {{"bm25s", "scipy"}}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_story_snippet_quotes_the_sentence_with_the_matched_words() -> None:
    from anime_recommender.search.lexical import index_terms, story_snippet

    synopsis = (
        "Satoru is a struggling manga artist. He can travel back in time moments before a tragedy. "
        "When his mother is murdered, he is sent back eighteen years to save a classmate."
    )
    snippet = story_snippet(synopsis, index_terms("sent back years to save a classmate"))
    assert snippet == "When his mother is murdered, he is sent back eighteen years to save a classmate."
    assert story_snippet(synopsis, index_terms("dragon")) is None and story_snippet(None, ["x"]) is None
    long = "Words " * 60 + "then the classmate is saved at last " + "and more words " * 30
    cut = story_snippet(long, index_terms("classmate"), max_chars=80)
    assert cut is not None and len(cut) <= 82 and "classmate" in cut and cut.startswith("…")


def test_a_plot_description_meets_the_synopsis_in_other_word_forms() -> None:
    synopsis = (
        "Hotaru gets lost in a forest and meets Gin, a boy wearing a mask. "
        "Should he ever be touched by a human being, he will disappear forever."
    )
    animes = [
        _WithSynopsis(id=1, title="Alpha", synopsis=synopsis),
        _WithSynopsis(id=2, title="Beta", synopsis="A masked hero touches the hearts of comedy fans."),
        _WithSynopsis(id=3, title="Gamma", synopsis="Two comedians tour the country."),
    ]
    lexical = build_lexical_index(Catalogue(animes))
    hits = lexical.search("a masked boy who disappears if a human touches him", 3)
    assert hits[0].anime_id == 1
    words = lexical.query_words("a masked boy who disappears if a human touches him")
    # The viewer's own words, keyed by the index's terms; pronouns are not story words.
    assert words == {
        "mask": "masked",
        "boy": "boy",
        "disappear": "disappears",
        "human": "human",
        "touch": "touches",
    }
    assert lexical.snippet(synopsis, ["touches", "human"]) == (
        "Should he ever be touched by a human being, he will disappear forever."
    )
    # 'comedies' is stemmed to 'comedi', no prefix of 'comedy', and 'dying' to 'die': still found.
    assert lexical.snippet("Nothing here. A comedy of errors follows.", ["comedies"]) == (
        "A comedy of errors follows."
    )
    assert lexical.snippet("Nothing here. He keeps dying and waking up.", ["dies"]) == (
        "He keeps dying and waking up."
    )


def test_an_index_saved_with_plural_stems_is_still_queried_its_own_way(
    index: LexicalIndex, tmp_path: Path
) -> None:
    import json

    from anime_recommender.search.lexical import document_fields

    legacy = LexicalIndex.build(
        [Anime(id=1, title="Masked Riders"), Anime(id=2, title="Comedy Club")], rule="plural"
    )
    legacy.save(tmp_path / "legacy")
    meta_path = tmp_path / "legacy" / "lexical.json"
    meta = json.loads(meta_path.read_text())
    assert meta.pop("terms") == "plural"  # what a bundle from before the rule was recorded holds
    meta_path.write_text(json.dumps(meta))
    loaded = LexicalIndex.load(tmp_path / "legacy")
    assert loaded.rule == "plural" and loaded.query_terms("masked comedies") == ["masked", "comedy"]
    assert [h.anime_id for h in loaded.search("comedies", 2)] == [2]
    assert document_fields(Anime(id=1, title="Masked Riders"), rule="plural")["title"] == ["masked", "rider"]
    meta["terms"] = "klingon"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(LexicalIndexError, match="klingon"):
        LexicalIndex.load(tmp_path / "legacy")
