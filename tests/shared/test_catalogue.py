from dataclasses import replace

import pytest

from anime_recommender.catalogue import Anime, AnimeType, Catalogue, with_fields


def test_catalogue_round_trips_and_orders_by_id(tiny_catalogue: Catalogue, tmp_path) -> None:
    path = tmp_path / "c.jsonl.gz"
    tiny_catalogue.save(path)
    loaded = Catalogue.load(path)
    assert loaded.ids == sorted(loaded.ids)
    assert [a.to_dict() for a in loaded] == [a.to_dict() for a in tiny_catalogue]
    assert loaded.by_id(1).title == "Cowboy Bebop"


def test_content_hash_changes_only_with_content() -> None:
    a = Anime(id=1, title="X", type=AnimeType.TV, tags=("a",))
    assert a.content_hash() == Anime(id=1, title="X", type=AnimeType.TV, tags=("a",)).content_hash()
    assert a.content_hash() != Anime(id=1, title="X", type=AnimeType.TV, tags=("b",)).content_hash()


def test_type_parse_maps_source_labels() -> None:
    assert AnimeType.parse("Movie") is AnimeType.MOVIE
    assert AnimeType.parse("tv") is AnimeType.TV
    assert AnimeType.parse("weird") is AnimeType.UNKNOWN
    assert AnimeType.parse(None) is AnimeType.UNKNOWN


def test_catalogues_saved_by_older_builds_still_load(tiny_catalogue: Catalogue, tmp_path) -> None:
    # Bundles published before the row format hold one JSON object per line: they keep loading.
    import gzip
    import json

    path = tmp_path / "old.jsonl.gz"
    lines = [json.dumps(a.to_dict(), ensure_ascii=False, separators=(",", ":")) for a in tiny_catalogue]
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    assert [a.to_dict() for a in Catalogue.load(path)] == [a.to_dict() for a in tiny_catalogue]


def test_rows_follow_the_header_and_a_foreign_header_is_refused(tmp_path) -> None:
    import gzip

    import pytest

    # Fields in another order than this version writes them: mapped by the header's names.
    path = tmp_path / "c.jsonl.gz"
    header = '{"format":"anime-catalogue-rows","version":1,"fields":["title","id","type","tags"]}'
    path.write_bytes(gzip.compress(f'{header}\n["K-On!",5680,"TV",["music"]]\n'.encode()))
    (anime,) = Catalogue.load(path)
    assert (anime.id, anime.title, anime.type, anime.tags) == (5680, "K-On!", AnimeType.TV, ("music",))
    path.write_bytes(gzip.compress(b'{"format":"something-else","fields":[]}\n[1]\n'))
    with pytest.raises(ValueError, match="not an anime-catalogue-rows file"):
        Catalogue.load(path)


def test_with_fields_is_dataclasses_replace() -> None:
    anime = Anime(id=1, title="Cowboy Bebop", type=AnimeType.TV, tags=("action",), related=("x",))
    for changes in ({"year": 1998, "season": "spring"}, {"id": 2}, {"tags": ()}, {}):
        changed = with_fields(anime, **changes)
        assert changed == replace(anime, **changes) and changed.related == anime.related
    with pytest.raises(KeyError):
        with_fields(anime, not_a_field=1)
