"""Promotional videos (story text's CM/PV) stay in the catalogue but no list shows them."""

from __future__ import annotations

from pathlib import Path

import pytest

from anime_pipeline.tiny_model import make_tiny_bundle
from anime_recommender.api.models import RecommendationRequest, SearchQuery, SimilarQuery
from anime_recommender.api.service import RecommenderService
from anime_recommender.artifacts import load_bundle
from anime_recommender.catalogue import AnimeType, Catalogue, with_fields
from anime_recommender.similarity import backend_from_bundle


@pytest.fixture(scope="module")
def service(
    tiny_catalogue: Catalogue, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Catalogue:
    # Given every third anime turned into a promotional video, the rest as they were
    promos = {a.id for a in list(tiny_catalogue)[::3]}
    catalogue = Catalogue(
        with_fields(a, type=AnimeType.PROMO) if a.id in promos else a for a in tiny_catalogue
    )
    root = make_tiny_bundle(catalogue, tmp_path_factory.mktemp("promo"), k=10, model_dir=tiny_model_dir)
    return RecommenderService(backend_from_bundle(load_bundle(root, all_tiers=True)))


def test_no_list_shows_a_promotional_video_but_it_answers_by_id(service: RecommenderService) -> None:
    catalogue = service.catalogue
    promos = catalogue.unlisted_ids()
    listed = [a.id for a in catalogue if a.id not in promos]
    assert promos and listed
    # When every anime's similar list, franchise list and a recommendation from it are asked for
    for anime_id in [a.id for a in catalogue]:
        similar = service.similar(anime_id, SimilarQuery(k=10))
        shown = {item.anime.id for item in similar.items} | {e.anime.id for e in similar.franchise}
        recommended = service.recommend(RecommendationRequest(liked=[anime_id], k=10))
        shown |= {item.anime.id for item in recommended.items}
        # Then none of them is a promotional video
        assert not shown & promos, anime_id
    for text in ("space", "school drama", "mecha", "comedy movie"):
        assert not {item.anime.id for item in service.search(SearchQuery(q=text, k=10)).items} & promos
    # But each still answers by id, and a search that asks for commercials by type finds them
    assert service.anime(next(iter(promos))).type is AnimeType.PROMO
    asked = service.search(SearchQuery(q="commercials", k=10)).items
    assert asked and {item.anime.id for item in asked} <= promos
