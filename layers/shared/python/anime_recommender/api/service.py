"""The recommender's domain logic behind the routes: never sees an HTTP request or a Lambda event.

One `RecommenderService` per loaded backend (catalogue + tier): it precomputes the title
search structure and the filter columns once, and turns backend hits into response models
with explanations.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from anime_recommender.api.errors import AnimeNotFoundError, ServiceUnavailableError
from anime_recommender.api.models import (
    AnimeRef,
    AnimeSummary,
    AutocompletePublic,
    ContinueEntryPublic,
    Explanation,
    FilterParams,
    FranchiseEntryPublic,
    ImportCountsPublic,
    ImportPublic,
    ImportQuery,
    RecommendationRequest,
    RecommendationsPublic,
    ScoredAnime,
    SearchExplanation,
    SearchItem,
    SearchMatchPublic,
    SearchPublic,
    SearchQuery,
    SearchQueryPublic,
    SimilarPublic,
    SimilarQuery,
    TitleMatchPublic,
    UnderstoodPublic,
)
from anime_recommender.catalogue import Anime, AnimeType
from anime_recommender.ranking import franchise_entries, relation_guess
from anime_recommender.search.engine import SearchEngine, SearchResult, explanation_summary
from anime_recommender.search.hybrid import SearchHit
from anime_recommender.search.titles import TitleIndex
from anime_recommender.similarity import (
    DISLIKE_WEIGHT,
    FUSED_DISLIKES,
    FUSED_LIKES,
    FUSION_DEPTH,
    FUSION_RANK_OFFSET,
    Hit,
    SimilarityBackend,
    Taste,
)
from anime_recommender.viewer_list import DEFAULT_WEIGHTS, ViewerList, next_in_franchises, taste_of

STRATEGY = (
    f"the similar-anime rankings of up to {FUSED_LIKES} liked anime are fused: each gives its weight / "
    f"(place + {FUSION_RANK_OFFSET}) to the first {FUSION_DEPTH} anime it ranks, and up to "
    f"{FUSED_DISLIKES} disliked anime take {DISLIKE_WEIGHT} / (place + {FUSION_RANK_OFFSET}) off theirs. "
    "Liked, disliked and excluded ids, and franchise siblings of liked anime, are never returned; one "
    "entry per franchise comes before any second entry of it; each result names the liked anime that "
    "contributed most."
)

_L = DEFAULT_WEIGHTS
IMPORT_STRATEGY = (
    f"Completed, Watching and On-Hold entries scored {_L.strong_from}-10 are strong likes (weight "
    f"{_L.strong}); scored {_L.like_from}-{_L.strong_from - 1} or not scored, mild likes ({_L.mild}); "
    f"lower scores, dislikes. Dropped is a dislike unless scored {_L.dropped_like_from} or more. Plan to "
    "Watch is not taste but is never recommended. Then as POST /recommendations (the strongest likes "
    "first, the best-known of equals first); nothing on the list is recommended."
)
# A list of ids the catalogue lacks is reported, up to this many (the count is always exact).
MAX_UNKNOWN_IDS = 1_000


def explain(query: Anime, other: Anime, components: dict[str, float] | None = None) -> Explanation:
    """Why `other` is close to `query`: shared tags and type/year/score proximity."""
    other_tags = set(other.tags)
    shared = [tag for tag in query.tags if tag in other_tags]
    year_diff = None if query.year is None or other.year is None else abs(query.year - other.year)
    score_diff = (
        None if query.score is None or other.score is None else round(abs(query.score - other.score), 2)
    )
    parts = []
    if shared:
        parts.append(
            "shares " + ", ".join(shared[:5]) + (f" and {len(shared) - 5} more" if len(shared) > 5 else "")
        )
    else:
        parts.append("no tags in common")
    if query.type is other.type and query.type is not AnimeType.UNKNOWN:
        parts.append(f"both {query.type.value}")
    if year_diff is not None:
        parts.append(
            "same year" if year_diff == 0 else f"{year_diff} year{'s' if year_diff != 1 else ''} apart"
        )
    if score_diff is not None:
        parts.append(f"score {other.score:.2f} vs {query.score:.2f}")
    summary = "; ".join(parts)
    return Explanation(
        shared_tags=shared,
        same_type=query.type is other.type,
        year_difference=year_diff,
        score_difference=score_diff,
        components=components,
        summary=summary[0].upper() + summary[1:] + ".",
    )


class RecommenderService:
    """Answers every route for one loaded backend."""

    def __init__(self, backend: SimilarityBackend) -> None:
        self.backend = backend
        catalogue = backend.catalogue
        self.catalogue = catalogue
        tables = backend.catalogue_tables()
        self.titles = tables.titles
        # Filter columns in row order: one vectorised mask per request instead of a Python scan.
        self._ids = np.array(catalogue.ids, dtype=np.int64)
        self._year = catalogue.numbers("year")
        self._score = catalogue.numbers("score")
        self._type = np.array([a.type.value for a in catalogue], dtype=object)
        dense, anchors = backend.search_pools()
        # Built once per backend (cold start / hot swap): parser tables and the ranker's columns.
        self.search_engine = SearchEngine(
            catalogue,
            backend.lexical,
            dense=dense,
            anchors=anchors,
            matcher=self.titles,
            exact_titles=tables.exact_titles,
        )

    # -- lookups -------------------------------------------------------------------------------
    def anime(self, anime_id: int) -> Anime:
        """The anime with this id; `AnimeNotFoundError` otherwise."""
        anime = self.catalogue.get(anime_id)
        if anime is None:
            raise AnimeNotFoundError(anime_id)
        return anime

    def autocomplete(self, q: str, limit: int, sfw: bool = True) -> AutocompletePublic:
        """Title suggestions for a fragment (no unlisted anime: `Catalogue.unlisted_ids(sfw)`)."""
        matches = self.titles.search(q, limit, hidden=self.catalogue.unlisted_ids(sfw))
        return AutocompletePublic(
            query=q,
            items=[
                TitleMatchPublic(
                    anime=AnimeSummary.of(self.catalogue.by_id(m.anime_id)),
                    matched=m.matched,
                    match=TitleIndex.STAGES[m.stage],
                )
                for m in matches
            ],
        )

    def allowed(self, filters: FilterParams) -> set[int] | None:
        """Ids passing the filters and `sfw`, or None when no filter is set (the backend then leaves
        unlisted anime out itself)."""
        if not filters.active:
            return None
        return set(self._ids[self.filter_mask(filters)].tolist())

    def filter_mask(self, filters: FilterParams) -> np.ndarray:
        """Row mask of the anime passing the filters and `sfw` (adult titles left out unless false)."""
        mask = ~self.catalogue.adult_mask() if filters.sfw else np.ones(len(self._ids), dtype=bool)
        if not filters.active:
            return mask
        if filters.type:
            mask &= np.isin(self._type, [t.value for t in filters.type])
        # NaN comparisons are False, so unknown years/scores fail an active filter, as documented.
        if filters.year_min is not None:
            mask &= self._year >= filters.year_min
        if filters.year_max is not None:
            mask &= self._year <= filters.year_max
        if filters.min_score is not None:
            mask &= self._score >= filters.min_score
        return mask

    # -- ranked lists --------------------------------------------------------------------------
    def similar(self, anime_id: int, params: SimilarQuery) -> SimilarPublic:
        """Cross-franchise similar anime with explanations (filtered, paged) and the franchise apart."""
        query = self.anime(anime_id)
        wanted = params.offset + params.k
        hits = self.backend.similar(
            anime_id, wanted, self.allowed(params), frozenset(params.exclude), sfw=params.sfw
        )
        page = hits[params.offset : wanted]
        unlisted = self.catalogue.unlisted_ids(params.sfw)
        siblings = (self.catalogue.by_id(i) for i in sorted(self.backend.siblings(anime_id) - unlisted))
        franchise, total = franchise_entries(query, siblings)
        return SimilarPublic(
            query=AnimeSummary.of(query),
            tier=self.backend.info.tier,
            k=params.k,
            offset=params.offset,
            next_offset=wanted if len(hits) >= wanted else None,
            items=[self._scored(query, hit) for hit in page],
            franchise=[
                FranchiseEntryPublic(anime=AnimeSummary.of(e.anime), relation=e.relation) for e in franchise
            ],
            franchise_total=total,
        )

    def recommend(self, request: RecommendationRequest) -> RecommendationsPublic:
        """A taste profile's recommendations (strategy in `STRATEGY`)."""
        for anime_id in (*request.liked, *request.disliked):
            self.anime(anime_id)
        wanted = request.offset + request.k
        hits = self.backend.recommend(
            Taste.of(request.liked, request.disliked),
            wanted,
            self.allowed(request),
            frozenset(request.exclude),
            sfw=request.sfw,
        )
        return RecommendationsPublic(
            tier=self.backend.info.tier,
            k=request.k,
            offset=request.offset,
            next_offset=wanted if len(hits) >= wanted else None,
            items=self._recommended(hits[request.offset : wanted]),
            strategy=STRATEGY,
        )

    def recommend_for_list(self, viewer: ViewerList, params: ImportQuery) -> ImportPublic:
        """A viewer's list's recommendations (`viewer_list.taste_of`), none of them on the list, and
        the next unwatched entries of the franchises they started (`viewer_list.next_in_franchises`)."""
        catalogue = self.catalogue
        known = [entry for entry in viewer.entries.values() if entry.anime_id in catalogue]
        unknown = sorted(anime_id for anime_id in viewer.entries if anime_id not in catalogue)
        taste = taste_of(known)
        wanted = params.offset + params.k
        hits = self.backend.recommend(taste, wanted, None, frozenset(viewer.entries), sfw=params.sfw)
        hidden = catalogue.unlisted_ids(params.sfw)
        upcoming = next_in_franchises(viewer, catalogue, self.backend.siblings, hidden)
        return ImportPublic(
            tier=self.backend.info.tier,
            k=params.k,
            offset=params.offset,
            next_offset=wanted if len(hits) >= wanted else None,
            items=self._recommended(hits[params.offset : wanted]),
            continue_watching=[
                ContinueEntryPublic(
                    anime=AnimeSummary.of(entry.anime),
                    after=AnimeRef(id=entry.after.id, title=entry.after.title),
                    relation=relation_guess(entry.after, entry.anime),
                )
                for entry in upcoming
            ],
            unknown_ids=unknown[:MAX_UNKNOWN_IDS],
            counts=ImportCountsPublic(
                entries=len(viewer.entries),
                by_status=viewer.by_status(),
                matched=len(known),
                unknown=len(unknown),
                skipped=viewer.skipped,
                duplicates=viewer.duplicates,
                liked=len(taste.liked),
                disliked=len(taste.disliked),
            ),
            strategy=IMPORT_STRATEGY,
        )

    def _recommended(self, hits: list[Hit]) -> list[ScoredAnime]:
        """Recommendation items, each explained against the liked anime it is closest to."""
        items = []
        for hit in hits:
            because = self.catalogue.get(hit.because_id) if hit.because_id is not None else None
            item = self._scored(because, hit)
            if because is not None and item.explanation is not None:
                item.explanation.because_you_liked = AnimeRef(id=because.id, title=because.title)
            items.append(item)
        return items

    def search(self, params: SearchQuery) -> SearchPublic:
        """Hybrid free-text search (`search.engine`); `ServiceUnavailableError` when neither the
        lexical index nor the encoder loaded."""
        engine = self.search_engine
        if not engine.available:
            raise ServiceUnavailableError(
                "Free-text search needs the lexical index or the embedding model, and neither is loaded; "
                "lookups by id still work."
            )
        wanted = params.offset + params.k
        result = engine.search(params.q, wanted, self.filter_mask(params))
        return SearchPublic(
            query=_query_public(result),
            tier=self.backend.info.tier,
            mode=result.mode,
            k=params.k,
            offset=params.offset,
            next_offset=wanted if len(result.hits) >= wanted else None,
            items=[self._search_item(hit) for hit in result.hits[params.offset : wanted]],
        )

    def _search_item(self, hit: SearchHit) -> SearchItem:
        anime = self.catalogue.by_id(hit.anime_id)
        story_words = [t for p in hit.explanation if p.kind == "story_terms" for t in p.terms]
        lexical = self.search_engine.ranker.lexical
        return SearchItem(
            anime=AnimeSummary.of(anime),
            similarity=round(hit.score, 4),
            explanation=SearchExplanation(
                matched=[
                    SearchMatchPublic.model_validate({"kind": p.kind, "value": p.value, "terms": p.terms})
                    for p in hit.explanation
                ],
                components={name: round(value, 4) for name, value in hit.components.items()},
                summary=explanation_summary(hit.explanation),
                snippet=lexical.snippet(anime.synopsis, story_words) if lexical and story_words else None,
            ),
        )

    def _scored(self, query: Anime | None, hit: Hit) -> ScoredAnime:
        other = self.catalogue.by_id(hit.anime_id)
        return ScoredAnime(
            anime=AnimeSummary.of(other),
            similarity=round(hit.score, 4),
            explanation=None if query is None else explain(query, other, hit.components),
        )


def _query_public(result: SearchResult) -> SearchQueryPublic:
    parsed = result.parsed
    return SearchQueryPublic(
        text=parsed.text,
        understood=[
            UnderstoodPublic(kind=u.kind, text=u.text, value=u.value, hard=u.hard, anime_id=u.anime_id)
            for u in parsed.understood
        ],
        residual=parsed.residual or None,
    )


class ServiceProvider:
    """Builds one `RecommenderService` per backend object the provider returns.

    The provider is called per request (cheap); when it hands out a new backend (a hot-swapped
    artifact version), the service is rebuilt once and the old one dropped.
    """

    def __init__(self, backend_provider: Callable[[], SimilarityBackend]) -> None:
        self._provider = backend_provider
        self._lock = threading.Lock()
        self._current: tuple[SimilarityBackend, RecommenderService] | None = None

    def __call__(self) -> RecommenderService:
        backend = self._provider()
        current = self._current
        if current is not None and current[0] is backend:
            return current[1]
        with self._lock:
            if self._current is None or self._current[0] is not backend:
                self._current = (backend, RecommenderService(backend))
            return self._current[1]
