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
    # Loaded records are full `Anime` values: equal, hashable, frozen, every field in its place.
    assert list(loaded) == list(tiny_catalogue)
    assert {hash(a) for a in loaded} == {hash(a) for a in tiny_catalogue}
    assert [a.related for a in loaded] == [a.related for a in tiny_catalogue]
    with pytest.raises(AttributeError):
        loaded.by_id(1).title = "changed"  # type: ignore[misc]


def test_numeric_columns_are_nan_where_unknown_and_read_only(tiny_catalogue: Catalogue) -> None:
    years = tiny_catalogue.numbers("year")
    assert years is tiny_catalogue.numbers("year")  # built once
    for anime, year in zip(tiny_catalogue, years.tolist(), strict=True):
        assert (year != year) if anime.year is None else year == anime.year
    with pytest.raises(ValueError):
        years[0] = 1999.0


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


# ---- story text (`synopsis`): optional, and invisible to data versions while absent ------------------

# A fully populated record and a bare one, with the content hashes and the saved file that the code
# before the `synopsis` field produced for them (commit b67d90c): bundles built then must not see
# every anime as changed, nor stop loading.
_BEBOP = Anime(
    id=1,
    title="Cowboy Bebop",
    type=AnimeType.TV,
    synonyms=("カウボーイビバップ",),
    episodes=26,
    status="FINISHED",
    year=1998,
    season="spring",
    score=8.78,
    tags=("action", "space"),
    members=1251960,
    sources=("https://myanimelist.net/anime/1",),
    picture="p",
    related=("https://myanimelist.net/anime/5",),
    thumbnail="t",
    duration_s=1440,
)
_BARE = Anime(id=40000, title="Mystery Short Without Data")
_HASHES_BEFORE_SYNOPSIS = {1: "9bfb8225cfc0874a", 40000: "628b8ca90a951110"}
_SAVED_BEFORE_SYNOPSIS = (
    '{"format":"anime-catalogue-rows","version":1,"fields":["id","title","type","synonyms","episodes",'
    '"status","year","season","score","tags","members","sources","picture","related","thumbnail",'
    '"duration_s"]}\n'
    '[1,"Cowboy Bebop","TV",["カウボーイビバップ"],26,"FINISHED",1998,"spring",8.78,["action","space"],'
    '1251960,["https://myanimelist.net/anime/1"],"p",["https://myanimelist.net/anime/5"],"t",1440]\n'
    '[40000,"Mystery Short Without Data","UNKNOWN",[],null,null,null,null,null,[],null,[],'
    "null,[],null,null]\n"
)


def test_a_record_without_synopsis_hashes_as_before_the_field_existed() -> None:
    assert Catalogue([_BEBOP, _BARE]).content_hashes() == _HASHES_BEFORE_SYNOPSIS
    assert "synopsis" not in _BEBOP.to_dict()


def test_a_synopsis_changes_the_hash_and_is_hashed_like_to_dict() -> None:
    import hashlib
    import json

    told = with_fields(_BEBOP, synopsis="Bounty hunters drift through the solar system.")
    assert told.content_hash() != _BEBOP.content_hash()
    assert told.content_hash() != with_fields(_BEBOP, synopsis="Something else.").content_hash()
    compact = json.dumps(told.to_dict(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert told.content_hash() == hashlib.sha256(compact.encode()).hexdigest()[:16]


def test_a_catalogue_without_synopses_saves_byte_for_byte_as_before(tmp_path) -> None:
    import gzip

    from anime_recommender.catalogue import saved_lines

    path = tmp_path / "c.jsonl.gz"
    Catalogue([_BEBOP, _BARE]).save(path)
    assert gzip.decompress(path.read_bytes()).decode() == _SAVED_BEFORE_SYNOPSIS
    old = tmp_path / "old.jsonl.gz"
    old.write_bytes(gzip.compress(_SAVED_BEFORE_SYNOPSIS.encode()))
    loaded = Catalogue.load(old)
    assert list(loaded) == [_BEBOP, _BARE] and loaded.by_id(1).synopsis is None
    assert list(saved_lines(old).values()) == Catalogue([_BEBOP, _BARE]).lines()


def test_synopses_round_trip_and_their_lines_never_equal_lines_without(tmp_path) -> None:
    from anime_recommender.catalogue import saved_lines

    told = Catalogue([with_fields(_BEBOP, synopsis="Bounty hunters, jazz\nand a corgi."), _BARE])
    assert told.has_story_text and not Catalogue([_BEBOP, _BARE]).has_story_text
    path = tmp_path / "c.jsonl.gz"
    told.save(path)
    loaded = Catalogue.load(path)
    assert list(loaded) == list(told) and loaded.by_id(40000).synopsis is None
    assert loaded.content_hashes() == told.content_hashes()
    # A delta compares saved lines to skip hashing: the bare record's line gained a column, so it
    # is hashed again (and gets the same hash) instead of being wrongly matched.
    lines = saved_lines(path)
    assert lines[40000] != Catalogue([_BEBOP, _BARE]).lines()[1]
    assert list(lines.values()) == told.lines()


def test_tag_table_holds_each_anime_distinct_tags_and_their_rows() -> None:
    catalogue = Catalogue(
        [
            Anime(id=3, title="C", tags=("drama", "action", "drama")),
            Anime(id=1, title="A", tags=("action",)),
            Anime(id=2, title="B"),
        ]
    )
    table = catalogue.tag_table()
    tags_of_row = [
        {table.names[c] for c in table.codes[start : start + count]}
        for start, count in zip(table.start, table.count, strict=True)
    ]
    assert tags_of_row == [{"action"}, set(), {"action", "drama"}]
    assert table.count.tolist() == [1, 0, 2]  # the repeated tag counts once
    assert {tag: rows.tolist() for tag, rows in table.rows_by_tag().items()} == {
        "action": [0, 2],
        "drama": [2],
    }
    assert catalogue.tag_table() is table


def test_a_synopsis_with_an_emoji_round_trips(tmp_path) -> None:
    # The loader parses rows a chunk at a time from bytes; a 4-byte character must survive that.
    items = [
        Anime(id=i, title=f"T{i}", synopsis='A panda \U0001f43c. Café «quoted» \\ "x"')
        for i in range(1, 3000)
    ]
    path = tmp_path / "c.jsonl.gz"
    Catalogue(items).save(path)
    assert list(Catalogue.load(path)) == items
