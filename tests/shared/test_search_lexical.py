"""The BM25 lexical index: field weighting, filters, save/load, and no scipy anywhere."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from anime_recommender.catalogue import Anime, AnimeType, Catalogue
from anime_recommender.search.lexical import LexicalIndex, LexicalIndexError, build_lexical_index


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
    assert hits[0].terms == ("tofu", "delivery")


def test_save_load_roundtrip(index: LexicalIndex, tmp_path: Path) -> None:
    files = index.save(tmp_path / "lexical")
    assert {f.name for f in files} >= {"lexical.json", "ids.npy", "vocab.index.json"}
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
