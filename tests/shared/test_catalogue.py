from anime_recommender.catalogue import Anime, AnimeType, Catalogue


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
