"""The similarity backend the API serves from, behind a small interface (no HTTP here).

`SimilarityBackend` is all the HTTP layer needs: the catalogue, which tier is active and the
versions, by-id neighbours, profile recommendations and free-text search. `TieredBackend`
implements it over whatever the artifact bundle could load: an ANN index of unit vectors
(V4 or V3, with the ONNX text encoder) or, in the last fallback tier, only the V2 neighbour
lists. The pieces are typed as protocols so the index/encoder/neighbour modules can evolve.
"""

from __future__ import annotations

import itertools
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from anime_recommender.artifacts import ServingBundle, Tier
from anime_recommender.catalogue import Catalogue
from anime_recommender.catalogue_tables import CatalogueTables
from anime_recommender.ranking import (
    COMPONENTS,
    CandidateColumns,
    RankingConfig,
    RerankFeatures,
    ranking_for,
    score_arrays,
    spread_franchises,
    year_proximity,
)
from anime_recommender.search.dense import EncoderDense, ListAnchors
from anime_recommender.search.hybrid import AnchorSearch, DenseSearch
from anime_recommender.search.lexical import LexicalIndex

Scored = tuple[int, float]

# How much of the disliked direction a profile subtracts (see `TieredBackend.recommend`).
DISLIKE_WEIGHT = 0.5
# V4 candidates handed to free-text re-ranking.
RERANK_POOL = 100
# The by-id re-ranking's pool (what `anime-build evaluate` measures): V4 top-200 ∪ V3 top-100 ∪
# the V2 teacher list (100); the V2 list brings the well-known, tag-close titles viewers recommend.
SIMILAR_V4_POOL = 200
SIMILAR_V3_POOL = 100
# Nearest synopses (story index) joining a similar list's candidates when the ranking weighs them.
SIMILAR_STORY_POOL = 50
SIMILAR_V2_POOL = 100
# A taste's ranking (`TieredBackend.recommend`): the by-id rankings of this many of its most-weighted
# liked anime are fused (each costs one `similar` ranking, ~1.5 ms in tier V4), and of this many
# disliked ones subtracted; each contributes weight / (rank + offset) over its first places.
FUSED_LIKES = 16
FUSED_DISLIKES = 4
FUSION_RANK_OFFSET = 10
FUSION_DEPTH = 60
# Unfiltered pools kept per backend (`TieredBackend._cached_pool`), and how many ids of each.
POOL_CACHE_SIZE = 4096
POOL_KEEP = 150


def spread_fetch(k: int) -> int:
    """Candidates fetched for k results, so one-per-franchise spreading can skip repeats."""
    return 2 * k + 10


class TextSearchUnavailableError(RuntimeError):
    """The active tier has no text encoder (V2 neighbour lists only)."""


class VectorSearch(Protocol):
    """An ANN index over unit vectors keyed by anime id (`anime_recommender.index.VectorIndex`)."""

    def search(self, vector: np.ndarray, k: int, allowed: set[int] | None = None) -> list[tuple[int, float]]:
        """Top-k (anime id, cosine) for a unit query vector, restricted to `allowed` ids if given."""
        ...

    def vector(self, anime_id: int) -> np.ndarray:
        """The stored unit vector of an anime; KeyError when absent."""
        ...

    def vectors(self, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Vectors of many anime: (float32 [n, dim], present [n]); absent ids give zero rows."""
        ...

    def similarities(self, query: np.ndarray, ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """`vectors(ids)[0] @ query` without materialising the vectors: (float32 [n], present [n])."""
        ...


class TextEncoder(Protocol):
    """Free text → unit vectors per space (`anime_recommender.encoder.OnnxEncoder`)."""

    def encode(self, texts: Sequence[str]) -> Mapping[str, np.ndarray]:
        """L2-normalised float32 vectors, one row per text, keyed by space ("v4", "v3")."""
        ...


class NeighbourSource(Protocol):
    """Precomputed V2 top-K lists (`anime_recommender.neighbours.NeighbourLists`)."""

    def for_id(self, anime_id: int, k: int) -> list[tuple[int, float]]:
        """Up to k (neighbour id, score), descending; KeyError or [] when the id has no list."""
        ...


@dataclass(frozen=True, slots=True)
class BackendInfo:
    """What /health reports and what cache keys include."""

    tier: Tier
    model_version: str
    data_version: str
    failures: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Hit:
    """A ranked result: the anime, its score, the ranking's components, the liked anime it is closest to."""

    anime_id: int
    score: float
    components: dict[str, float] | None = None
    because_id: int | None = None


@dataclass(frozen=True, slots=True)
class Taste:
    """A viewer's taste: liked anime with a weight each (1.0 = a plain like), and disliked anime."""

    liked: Mapping[int, float]
    disliked: Sequence[int] = ()

    @classmethod
    def of(cls, liked: Iterable[int], disliked: Iterable[int] = ()) -> Taste:
        """Equal-weight likes (what `POST /recommendations` sends)."""
        return cls(dict.fromkeys(liked, 1.0), tuple(disliked))


class SimilarityBackend(Protocol):
    """Everything the API routes need to answer similarity questions."""

    @property
    def catalogue(self) -> Catalogue: ...

    @property
    def info(self) -> BackendInfo: ...

    @property
    def supports_text_search(self) -> bool: ...

    def similar(
        self,
        anime_id: int,
        k: int,
        allowed: AbstractSet[int] | None = None,
        exclude: AbstractSet[int] = ...,
        *,
        sfw: bool = True,
    ) -> list[Hit]:
        """Up to k anime similar to `anime_id`, in `allowed`, not in `exclude`; never itself, a sibling
        or an unlisted anime (`Catalogue.unlisted_ids(sfw)`)."""
        ...

    def siblings(self, anime_id: int) -> frozenset[int]:
        """Ids of the anime's franchise siblings (`ranking.FranchiseIndex`); empty for an unknown id."""
        ...

    def recommend(
        self,
        taste: Taste,
        k: int,
        allowed: AbstractSet[int] | None = None,
        exclude: AbstractSet[int] = ...,
        *,
        sfw: bool = True,
    ) -> list[Hit]:
        """Up to k anime for a taste; never its liked/disliked ids, siblings of liked ones, excluded or
        unlisted anime."""
        ...

    def search_text(self, text: str, k: int, allowed: set[int] | None = None) -> list[Scored]:
        """Up to k anime closest to free text; `TextSearchUnavailableError` in the V2 tier."""
        ...

    @property
    def lexical(self) -> LexicalIndex | None:
        """The catalogue's BM25 index for hybrid search (None when the bundle's failed to load)."""
        ...

    def search_pools(self) -> tuple[DenseSearch | None, AnchorSearch]:
        """Hybrid search's dense pool (None without an encoder) and its 'like …' anchor pool."""
        ...

    def catalogue_tables(self) -> CatalogueTables:
        """The catalogue's title, franchise and exact-title tables (`catalogue_tables`)."""
        ...


def _unit(vector: np.ndarray) -> np.ndarray | None:
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm < 1e-6:
        return None
    return (vector / norm).astype(np.float32)


@dataclass
class TieredBackend:
    """`SimilarityBackend` over a vector index (tiers V4/V3) or the V2 neighbour lists only.

    Args:
        catalogue: the anime served (row order = artifact order).
        info: tier and versions.
        neighbours: V2 lists; always present (by-id fallback when an id is missing from the index).
        index: the active tier's ANN index, None in tier V2.
        encoder: the ONNX text encoder, None in tier V2.
        space: which encoder output matches `index` ("v4" or "v3").
        secondary: the V3 index while serving V4, for the re-ranking's V3 component.
        ranking: re-ranking knobs; None = plain cosine order.
        lexical: the catalogue's BM25 index (hybrid search's lexical side), None when unavailable.
        tables: the catalogue's lookup tables as the bundle saved them; None = built on first use.
    """

    catalogue: Catalogue
    info: BackendInfo
    neighbours: NeighbourSource
    index: VectorSearch | None = None
    encoder: TextEncoder | None = None
    space: str = "v4"
    secondary: VectorSearch | None = None
    ranking: RankingConfig | None = None
    lexical: LexicalIndex | None = None
    tables: CatalogueTables | None = field(default=None, repr=False)
    story: VectorSearch | None = None
    _all_ids: frozenset[int] = field(init=False, repr=False)
    _listed_sets: dict[bool, frozenset[int]] = field(default_factory=dict, init=False, repr=False)
    _pool_cache: OrderedDict[int, array[int]] = field(default_factory=OrderedDict, init=False, repr=False)
    _pool_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _features: RerankFeatures | None = field(default=None, init=False, repr=False)
    _features_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _tables_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self._all_ids = frozenset(self.catalogue.ids)
        if self.info.tier == "v2" and self.index is not None:
            raise ValueError("tier v2 serves neighbour lists only; pass index=None")
        if self.info.tier != "v2" and self.index is None:
            raise ValueError(f"tier {self.info.tier} needs a vector index")

    @property
    def supports_text_search(self) -> bool:
        return self.index is not None and self.encoder is not None

    # -- by id -------------------------------------------------------------------------------
    def similar(
        self,
        anime_id: int,
        k: int,
        allowed: AbstractSet[int] | None = None,
        exclude: AbstractSet[int] = frozenset(),
        *,
        sfw: bool = True,
    ) -> list[Hit]:
        """See `SimilarityBackend.similar`.

        Franchise siblings are banned in every tier (the API lists them apart), and each list
        shows one entry per other franchise before any repeat (`ranking.spread_franchises`).
        Tier V4 with the V3 index at hand: the `SIMILAR_*_POOL` candidates (inside the allowed
        set, so filters never starve the list) re-ranked as `ranking.rank_candidates` does.
        Tier V3: cosine order. Tier V2, or an id missing from the index: the V2 neighbour list.
        """
        if k <= 0:
            return []
        banned = set(exclude) | {anime_id} | self.siblings(anime_id)
        return self._listed(lambda allowed: self._pool(anime_id, k, allowed, banned), allowed, k, sfw)

    def siblings(self, anime_id: int) -> frozenset[int]:
        """See `SimilarityBackend.siblings` (memoised in `RerankFeatures`)."""
        if anime_id not in self._all_ids:
            return frozenset()
        return self.rerank_features().siblings_of(anime_id)

    def recommend(
        self,
        taste: Taste,
        k: int,
        allowed: AbstractSet[int] | None = None,
        exclude: AbstractSet[int] = frozenset(),
        *,
        sfw: bool = True,
    ) -> list[Hit]:
        """Fuse the by-id rankings of the taste's liked anime into one list.

        Each of the `FUSED_LIKES` most-weighted liked anime (ties: the best-known first) contributes
        weight / (rank + `FUSION_RANK_OFFSET`) to every candidate in the first `FUSION_DEPTH` places
        of its ranking as `similar` ranks it (the tuned re-ranking in tier V4, the V2 lists in tier
        V2), counting places among the anime still allowed; each of up to `FUSED_DISLIKES` disliked
        anime takes DISLIKE_WEIGHT / (rank + offset) off the candidates in its own ranking. A result
        is attributed to the liked anime that contributed most to it. Liked, disliked and excluded
        anime, franchise siblings of liked ones (the viewer knows that franchise) and unlisted anime
        never appear, and the list shows one entry per franchise before any repeat, as `similar` does.

        Measured against the former profile centroid (unit weighted mean of the liked vectors, one
        ANN search) on simulated lists judged by the dev set (`anime-build list-eval`): graded
        recall@10 0.014 → 0.083 (README, "Import your list").
        """
        liked = {a: w for a, w in taste.liked.items() if w > 0 and a in self._all_ids}
        if k <= 0 or not liked:
            return []
        banned = set(exclude) | set(taste.liked) | set(taste.disliked)
        for anime_id in liked:
            banned |= self.siblings(anime_id)
        features = self.rerank_features()

        def best_known(anime_id: int) -> tuple[float, float, int]:
            return -liked[anime_id], -float(features.pop[self.catalogue.row(anime_id)]), anime_id

        strongest = sorted(liked, key=best_known)[:FUSED_LIKES]
        against = [a for a in taste.disliked if a in self._all_ids][:FUSED_DISLIKES]

        def fused(allowed: AbstractSet[int] | None) -> list[Hit]:
            scores: dict[int, float] = {}
            because: dict[int, tuple[float, int]] = {}
            for source in strongest:
                for rank, anime_id in enumerate(self._pool_ids(source, allowed, banned)):
                    share = liked[source] / (rank + FUSION_RANK_OFFSET)
                    scores[anime_id] = scores.get(anime_id, 0.0) + share
                    if share > because.get(anime_id, (0.0, 0))[0]:
                        because[anime_id] = (share, source)
            for source in against:
                for rank, anime_id in enumerate(self._pool_ids(source, allowed, banned)):
                    if anime_id in scores:
                        scores[anime_id] -= DISLIKE_WEIGHT / (rank + FUSION_RANK_OFFSET)
            ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
            return [Hit(a, score, because_id=because[a][1]) for a, score in ranked]

        return self._listed(fused, allowed, k, sfw)

    def _pool(self, anime_id: int, k: int, allowed: AbstractSet[int] | None, banned: set[int]) -> list[Hit]:
        """`similar`'s ranking for `anime_id` before spreading: tier V4 with the V3 index at hand, the
        re-ranked `SIMILAR_*_POOL` candidates; tier V3, `spread_fetch(k)` by cosine; tier V2 or an id
        the index lacks, the V2 neighbour list. Never a `banned` id, always inside `allowed`."""
        query = self._vector(anime_id)
        if query is None:
            return [Hit(a, s) for a, s in self._from_list(anime_id, spread_fetch(k), allowed, banned)]
        if self.secondary is None or self.ranking is None:
            return [Hit(a, s) for a, s in self._search(query, spread_fetch(k), allowed, banned)]
        return self._reranked(anime_id, query, allowed, banned)

    def _pool_ids(self, anime_id: int, allowed: AbstractSet[int] | None, banned: set[int]) -> list[int]:
        """The first `FUSION_DEPTH` ids of `anime_id`'s ranking that are not `banned` (a taste's fusion)."""
        if allowed is None:
            ranked: Iterable[int] = self._cached_pool(anime_id)
        else:
            own = {anime_id} | self.siblings(anime_id)
            ranked = (hit.anime_id for hit in self._pool(anime_id, FUSION_DEPTH, allowed, own))
        return list(itertools.islice((a for a in ranked if a not in banned), FUSION_DEPTH))

    def _cached_pool(self, anime_id: int) -> array[int]:
        """The first `POOL_KEEP` ids of `anime_id`'s unfiltered ranking, from a per-backend LRU.

        Tastes share their best-known favourites (the fusion takes those first), so a warm container
        ranks a popular anime's pool once for every list that loves it; a hot swap brings a new
        backend, hence a fresh cache. Each entry is a 600-byte int array (4096 entries: ~2.5 MB).
        """
        with self._pool_lock:
            pool = self._pool_cache.get(anime_id)
            if pool is not None:
                self._pool_cache.move_to_end(anime_id)
                return pool
        own = {anime_id} | self.siblings(anime_id)
        ranked = self._pool(anime_id, FUSION_DEPTH, None, own)
        pool = array("i", (hit.anime_id for hit in ranked[:POOL_KEEP]))
        with self._pool_lock:
            self._pool_cache[anime_id] = pool
            if len(self._pool_cache) > POOL_CACHE_SIZE:
                self._pool_cache.popitem(last=False)
        return pool

    def _listed(
        self,
        ranked: Callable[[AbstractSet[int] | None], list[Hit]],
        allowed: AbstractSet[int] | None,
        k: int,
        sfw: bool,
    ) -> list[Hit]:
        """`ranked(allowed)` spread and cut to k (`_spread`), unlisted anime dropped.

        Unlisted anime are dropped after an unfiltered search rather than banned in it, where each
        banned id widens the over-fetch. When that leaves fewer than k (the neighbours of an adult
        title are mostly adult), the search runs again inside the listed anime.
        """
        hits = ranked(allowed)
        listed = self._spread(hits, k, sfw)
        if len(listed) < k and allowed is None:
            unlisted = self.catalogue.unlisted_ids(sfw)
            if any(hit.anime_id in unlisted for hit in hits):
                listed = self._spread(ranked(self._listed_ids(sfw)), k, sfw)
        return listed

    def _listed_ids(self, sfw: bool) -> frozenset[int]:
        listed = self._listed_sets.get(sfw)
        if listed is None:
            listed = self._all_ids - self.catalogue.unlisted_ids(sfw)
            self._listed_sets[sfw] = listed
        return listed

    # -- free text ---------------------------------------------------------------------------
    def search_pools(self) -> tuple[DenseSearch | None, AnchorSearch]:
        """See `SimilarityBackend.search_pools`: the encoder over the active index (V4 adds the V3
        cosine, as `search_text`), anchors from the vectors, or from the V2 lists in tier V2."""
        if self.index is None or self.encoder is None:
            return None, ListAnchors(self.neighbours)
        dense = EncoderDense(
            self.encoder,
            self.index,
            space=self.space,
            secondary=self.secondary if self.ranking is not None else None,
            w_v3=self.ranking.text_w_v3 if self.ranking is not None else 0.0,
            story=self.story,
        )
        return dense, dense.anchors

    def search_text(self, text: str, k: int, allowed: set[int] | None = None) -> list[Scored]:
        """Encode the text with the active tier's output and search its index."""
        if self.index is None or self.encoder is None:
            raise TextSearchUnavailableError(f"tier {self.info.tier} has no text encoder")
        if k <= 0:
            return []
        encoded = self.encoder.encode([text])
        query = _unit(np.asarray(encoded[self.space][0], dtype=np.float32))
        if query is None:
            return []
        if self.secondary is None or self.ranking is None or "v3" not in encoded:
            return self._search(query, k, allowed, set())
        return self._text_blended(query, encoded["v3"][0], k, allowed)

    def _text_blended(
        self, query_v4: np.ndarray, raw_v3: np.ndarray, k: int, allowed: set[int] | None
    ) -> list[Scored]:
        """Free text in tier V4: V4 + V3 candidates, scored cos_v4 + w·cos_v3 + w·popularity."""
        assert self.index is not None and self.secondary is not None and self.ranking is not None
        query_v3 = _unit(np.asarray(raw_v3, dtype=np.float32))
        pool = max(RERANK_POOL, k)
        found = dict(self._search(query_v4, pool, allowed, set()))
        if query_v3 is not None:
            permitted = None if allowed is None else allowed & self._all_ids
            if permitted is None or permitted:
                found.update(
                    dict(
                        self.secondary.search(
                            query_v3, min(pool, len(permitted or self._all_ids)), allowed=permitted
                        )
                    )
                )
        if not found:
            return []
        ids = np.fromiter(found, dtype=np.int64, count=len(found))
        m4, _ = self.index.vectors(ids.tolist())
        score = m4 @ query_v4
        if query_v3 is not None:
            v3_sims, _ = self.secondary.similarities(query_v3, ids.tolist())
            score = score + self.ranking.text_w_v3 * v3_sims
        features = self.rerank_features()
        score = score + self.ranking.text_w_popularity * features.pop[features.rows(ids)]
        order = np.lexsort((ids, -score))[:k]
        return [(int(ids[i]), float(score[i])) for i in order]

    # -- internals ---------------------------------------------------------------------------
    def _reranked(
        self, anime_id: int, query: np.ndarray, allowed: AbstractSet[int] | None, banned: set[int]
    ) -> list[Hit]:
        """`ranking.rank_candidates`'s ranking, vectorised (`score_arrays`) over precomputed columns.

        Returns the whole pool, best first; `similar` spreads franchises and cuts it to k.
        """
        assert self.index is not None and self.secondary is not None and self.ranking is not None
        features = self.rerank_features()
        found = dict(self._search(query, SIMILAR_V4_POOL, allowed, banned))
        query_v3 = self._secondary_vector(anime_id)
        extra: list[int] = []
        if query_v3 is not None:
            extra += [a for a, _ in self._search(query_v3, SIMILAR_V3_POOL, allowed, banned, self.secondary)]
        extra += [
            a
            for a, _ in self._list(anime_id, SIMILAR_V2_POOL)
            if a not in banned and a in self._all_ids and (allowed is None or a in allowed)
        ]
        query_story = self._story_vector(anime_id) if self.ranking.w_story > 0 else None
        if query_story is not None:
            assert self.story is not None
            story_hits = self._search(query_story, SIMILAR_STORY_POOL, allowed, banned, self.story)
            extra += [a for a, _ in story_hits]
        extra = sorted(set(extra) - set(found))
        if extra:
            # V3-search and V2-list candidates: their V4 cosine from one gather (absent ones dropped).
            matrix, present = self.index.vectors(extra)
            sims = matrix @ query
            for other, sim, ok in zip(extra, sims.tolist(), present.tolist(), strict=True):
                if ok:
                    found[other] = float(sim)
        if not found:
            return []
        ids = list(found)
        id_arr = np.array(ids, dtype=np.int64)
        v4_arr = np.array([found[i] for i in ids], dtype=np.float64)
        if query_v3 is None:
            v3_arr = np.zeros(len(ids), dtype=np.float64)
        else:
            # Candidates without a V3 vector get zero rows, hence V3 similarity 0 (as documented).
            v3_sims, _ = self.secondary.similarities(query_v3, ids)
            v3_arr = v3_sims.astype(np.float64)
        story_arr = None
        if query_story is not None:
            assert self.story is not None
            # Candidates without a synopsis have no story vector: story similarity 0.
            story_arr = self.story.similarities(query_story, ids)[0].astype(np.float64)
        rows = features.rows(id_arr)
        query_row = self.catalogue.row(anime_id)
        cfg = self.ranking
        score, comps = score_arrays(
            cfg,
            CandidateColumns(
                v4=v4_arr,
                v3=v3_arr,
                pop=features.pop[rows],
                year_prox=year_proximity(features.years[query_row], features.years[rows], cfg.year_scale),
                qual=features.qual[rows],
                tags=features.tag_jaccard(query_row, rows),
                story=story_arr,
            ),
        )
        # rank_candidates' order: score desc, then V4 similarity desc, then id (lexsort: last key first).
        order = np.lexsort((id_arr, -v4_arr, -score))
        order = order[np.isfinite(score[order])]
        columns = {name: comps[name][order].tolist() for name in COMPONENTS}
        ranked = zip(id_arr[order].tolist(), score[order].tolist(), strict=True)
        return [
            Hit(hit_id, value, {name: columns[name][j] for name in COMPONENTS})
            for j, (hit_id, value) in enumerate(ranked)
        ]

    def _spread(self, hits: list[Hit], k: int, sfw: bool) -> list[Hit]:
        """The first k listed hits with one per franchise before any repeat (`ranking.spread_franchises`).

        Every list passes here, so the anime no list shows (`Catalogue.unlisted_ids`) are dropped here.
        """
        unlisted = self.catalogue.unlisted_ids(sfw)
        by_id = {hit.anime_id: hit for hit in hits if hit.anime_id not in unlisted}
        features = self.rerank_features()
        return [by_id[a] for a in spread_franchises(list(by_id), features.siblings_of, k)]

    def rerank_features(self) -> RerankFeatures:
        """The re-ranking's per-row columns, built once (~0.13 s on 17.5k anime).

        The API builds them during init (`api.lambda_app.load_serving`), so no request pays for
        them; the lock makes concurrent first calls (uvicorn's thread pool) build them only once.
        """
        features = self._features
        if features is None:
            with self._features_lock:
                if self._features is None:
                    self._features = RerankFeatures(self.catalogue, self.catalogue_tables().franchise)
                features = self._features
        return features

    def catalogue_tables(self) -> CatalogueTables:
        """See `SimilarityBackend.catalogue_tables`: the bundle's, else built once (~0.15 s on 17.5k)."""
        tables = self.tables
        if tables is None:
            with self._tables_lock:  # not the features' lock: their build calls this
                if self.tables is None:
                    self.tables = CatalogueTables.build(self.catalogue)
                tables = self.tables
        return tables

    def _story_vector(self, anime_id: int) -> np.ndarray | None:
        return None if self.story is None else _stored_vector(self.story, anime_id)

    def _secondary_vector(self, anime_id: int) -> np.ndarray | None:
        assert self.secondary is not None
        return _stored_vector(self.secondary, anime_id)

    def _vector(self, anime_id: int) -> np.ndarray | None:
        if self.index is None:
            return None
        try:
            return np.asarray(self.index.vector(anime_id), dtype=np.float32)
        except KeyError:
            return None

    def _search(
        self,
        query: np.ndarray,
        k: int,
        allowed: AbstractSet[int] | None,
        banned: set[int],
        index: VectorSearch | None = None,
    ) -> list[Scored]:
        """Top-k of `index` (default: the active one) in `allowed`, never in `banned`."""
        index = index or self.index
        assert index is not None
        if allowed is None:
            # Unfiltered: over-fetch by the number of banned ids instead of building a huge allow-set.
            fetch = min(k + len(banned), len(self._all_ids))
            hits = index.search(query, fetch)
        else:
            permitted = set(allowed).intersection(self._all_ids) - banned
            if not permitted:
                return []
            hits = index.search(query, min(k, len(permitted)), allowed=permitted)
        return [(a, float(s)) for a, s in hits if a not in banned][:k]

    def _from_list(
        self, anime_id: int, k: int, allowed: AbstractSet[int] | None, banned: set[int]
    ) -> list[Scored]:
        """The first k of `anime_id`'s V2 neighbour list inside `allowed`, none `banned` (score, then id)."""
        ranked = sorted(self._list(anime_id, len(self.catalogue)), key=lambda item: (-item[1], item[0]))
        return [(a, s) for a, s in ranked if a not in banned and (allowed is None or a in allowed)][:k]

    def _list(self, anime_id: int, depth: int) -> list[Scored]:
        try:
            return [(int(a), float(s)) for a, s in self.neighbours.for_id(anime_id, depth)]
        except KeyError:
            return []


def _stored_vector(index: VectorSearch, anime_id: int) -> np.ndarray | None:
    """An anime's vector in `index`, or None when the index does not hold it."""
    try:
        return np.asarray(index.vector(anime_id), dtype=np.float32)
    except KeyError:
        return None


def backend_from_bundle(bundle: ServingBundle, ranking: RankingConfig | None = None) -> TieredBackend:
    """Adapt a loaded artifact bundle to `SimilarityBackend`.

    In tier V4 the V3 index (when the bundle loaded it, `load_bundle(all_tiers=True)`) feeds the
    re-ranking's V3 component; without it the re-ranking runs with V3 similarity 0.
    Failure reasons are reported relative to the bundle root, never with its absolute path.
    """
    root = str(bundle.root)
    failures = tuple(
        f"{f.component}: {f.path}: {f.reason.replace(root, '<artifacts>')}" for f in bundle.failures
    )
    info = BackendInfo(
        tier=bundle.tier,
        model_version=bundle.model_version,
        data_version=bundle.data_version,
        failures=failures,
    )
    if bundle.tier == "v2":
        return TieredBackend(
            bundle.catalogue, info, bundle.neighbours, lexical=bundle.lexical, tables=bundle.tables
        )
    return TieredBackend(
        bundle.catalogue,
        info,
        bundle.neighbours,
        index=bundle.index,
        encoder=bundle.encoder,
        space=bundle.tier,
        secondary=bundle.indexes.get("v3") if bundle.tier == "v4" else None,
        ranking=(ranking or ranking_for(bundle.catalogue)) if bundle.tier == "v4" else None,
        lexical=bundle.lexical,
        tables=bundle.tables,
        story=bundle.story,
    )
