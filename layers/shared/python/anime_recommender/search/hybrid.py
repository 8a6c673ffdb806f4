"""The one ranking code path of free-text search: dense + lexical + tags + priors, with explanations.

For a `ParsedQuery` the ranker scores every catalogue row that passes the query's hard filters
(vectorised numpy, a few ms at 40k rows) as a weighted blend of components in [0, 1]:

* ``dense`` — the int8 ONNX encoder's similarity to the residual text (a pool from the vector
  index, min–max scaled within the pool; rows outside the pool get 0);
* ``lexical`` — BM25 over titles, synonyms, tags and story text, scaled by the best row's score;
* ``tags`` — the weighted share of the query's genre boosts ("jazz" → music) the anime has;
* ``anchor`` — similarity to the anime named after "like …" (pool from the vector index);
* ``era`` — 1 inside a soft era preference ("old", "modern");
* ``popularity`` / ``quality`` — the priors the similar lists use (`ranking.popularity/quality`).

With no signal at all (empty text, only stop words, only a negation) only the priors rank, so
the answer is "popular within the filters". Every hit carries explanation parts (matched
genres, era, title words, story terms, dense similarity, "like" anchor, or "popular"): never empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from anime_recommender.catalogue import Anime, AnimeType, Catalogue
from anime_recommender.ranking import catalogue_popularity, catalogue_quality
from anime_recommender.search.lexical import LexicalIndex, document_fields, row_mask
from anime_recommender.search.normalise import tokens
from anime_recommender.search.query import ParsedQuery

Scored = tuple[int, float]
COMPONENTS: tuple[str, ...] = ("dense", "lexical", "tags", "anchor", "era", "popularity", "quality")


class DenseSearch(Protocol):
    """Free text → up to k (anime id, cosine) from the vector index, inside `allowed` ids if given."""

    def __call__(self, text: str, k: int, allowed: set[int] | None) -> Sequence[Scored]: ...


class AnchorSearch(Protocol):
    """Anchor anime ids → up to k (anime id, cosine) most similar to them, inside `allowed` if given."""

    def __call__(self, anchor_ids: Sequence[int], k: int, allowed: set[int] | None) -> Sequence[Scored]: ...


class HybridWeights(BaseModel):
    """Weights of the blend; defaults tuned on the TUNE half of the query set (`search_eval --tune`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dense: float = Field(0.25, ge=0.0, description="Dense (encoder) similarity, min–max scaled in the pool.")
    lexical: float = Field(1.0, ge=0.0, description="BM25 score / best BM25 score.")
    tags: float = Field(2.0, ge=0.0, description="Weighted share of the query's genre boosts matched.")
    anchor: float = Field(1.0, ge=0.0, description="Similarity to the 'like …' anime, min–max scaled.")
    era: float = Field(0.3, ge=0.0, description="Inside the soft era preference ('old', 'modern').")
    popularity: float = Field(6.0, ge=0.0, description="Popularity prior log10(members)/7.")
    quality: float = Field(1.0, ge=0.0, description="Score prior (score-5)/4.")
    pool: int = Field(100, ge=1, description="Dense / anchor candidates fetched from the vector index.")
    lexical_floor: float = Field(
        0.0,
        ge=0.0,
        description="BM25 scores are divided by max(best score, this): a query whose best match is weaker "
        "(a few title or tag words) keeps a small lexical part and the priors decide, while a strong story "
        "match (many rare words of one synopsis) outweighs them.",
    )
    story_override: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="Rows whose BM25 score is at least this share of the best one pass the type/era/"
        "length filters understood from the text, which a plot description can trigger by mistake "
        "('a ghost from a horror film', 'set in the 1960s'); 0: off.",
    )


#: Up to this share of the catalogue left out by a search's filters is dropped when ranking rather than
#: passed to the vector index as an allowed-id set.
MAX_UNFILTERED_EXCLUDED_SHARE = 0.02

#: The blend for a catalogue with story text (synopses, fine tags, the story index): a strong story
#: match outweighs the priors and the genres read from a plot description. Tuned on the tune half of
#: the own queries with the story-text build (`search_eval --tune`); the defaults stay the plain
#: catalogue's, tuned there.
STORY_TEXT_WEIGHTS = HybridWeights(
    dense=0.5, lexical=3.0, tags=1.0, popularity=4.0, lexical_floor=14.0, story_override=0.9
)


def weights_for(catalogue: Catalogue) -> HybridWeights:
    """The blend a catalogue is searched with: `STORY_TEXT_WEIGHTS` with story text, else the defaults."""
    return STORY_TEXT_WEIGHTS if catalogue.has_story_text else HybridWeights()


@dataclass(frozen=True, slots=True)
class ExplanationPart:
    """Why a hit matched: kind ('genre', 'era', 'type', 'length', 'title_words', 'tag_words',
    'story_terms', 'dense', 'like', 'popular'), a readable value and the query words involved."""

    kind: str
    value: str
    terms: tuple[str, ...] = ()
    weight: float = 0.0


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One search result: the anime, its score, the weighted components and the explanation."""

    anime_id: int
    score: float
    components: dict[str, float]
    explanation: tuple[ExplanationPart, ...] = field(default=())


_TYPE_CODES: dict[AnimeType, int] = {t: i for i, t in enumerate(AnimeType)}


class HybridRanker:
    """Per-catalogue columns for the blend (built once per bundle) and the ranking itself.

    `lexical` None (the bundle's index failed to load): the lexical component is 0 everywhere.
    """

    def __init__(
        self, catalogue: Catalogue, lexical: LexicalIndex | None, weights: HybridWeights | None = None
    ) -> None:
        if lexical is not None and (
            len(lexical) != len(catalogue) or not np.array_equal(lexical.ids, np.asarray(catalogue.ids))
        ):
            raise ValueError("lexical index rows do not match the catalogue")
        self.catalogue = catalogue
        self.lexical = lexical
        self.weights = weights or weights_for(catalogue)
        self.ids = np.asarray(catalogue.ids, dtype=np.int64)
        n = len(catalogue)
        self.pop = catalogue_popularity(catalogue)
        self.qual = catalogue_quality(catalogue)
        self.years = catalogue.numbers("year")
        self.episodes = catalogue.numbers("episodes")
        self.type_codes = np.fromiter((_TYPE_CODES[a.type] for a in catalogue), dtype=np.int8, count=n)
        self._tag_rows = catalogue.tag_table().rows_by_tag()

    # -- filters -------------------------------------------------------------------------------
    def filter_mask(self, parsed: ParsedQuery, allowed_rows: np.ndarray | None = None) -> np.ndarray:
        """Rows passing the query's hard filters (and `allowed_rows`); like-anchors are excluded."""
        n = len(self.ids)
        given = row_mask(allowed_rows, n)
        mask = np.ones(n, dtype=bool) if given is None else given.copy()
        if parsed.types:
            mask &= np.isin(self.type_codes, [_TYPE_CODES[t] for t in parsed.types])
        if AnimeType.PROMO not in parsed.types:
            # Commercials and promotional videos only when asked for by type. Adult titles are the
            # caller's choice (`sfw`), already left out of `allowed_rows` when it is on.
            mask &= self.catalogue.listed_mask(sfw=False)
        if parsed.exclude_types:
            mask &= ~np.isin(self.type_codes, [_TYPE_CODES[t] for t in parsed.exclude_types])
        for tag in parsed.exclude_tags:
            rows = self._tag_rows.get(tag)
            if rows is not None:
                mask[rows] = False
        if parsed.year_min is not None or parsed.year_max is not None:
            known = ~np.isnan(self.years)
            years = np.nan_to_num(self.years, nan=0.0)
            ok = known
            if parsed.year_min is not None:
                ok = ok & (years >= parsed.year_min)
            if parsed.year_max is not None:
                ok = ok & (years <= parsed.year_max)
            mask &= ok
        if parsed.episodes_min is not None or parsed.episodes_max is not None:
            known = ~np.isnan(self.episodes)
            episodes = np.nan_to_num(self.episodes, nan=0.0)
            # Unknown counts (airing long-runners) pass a lower bound only, as `ParsedQuery.accepts`.
            ok = np.ones(n, dtype=bool) if parsed.episodes_max is None else known
            if parsed.episodes_min is not None:
                ok = ok & (~known | (episodes >= parsed.episodes_min))
            if parsed.episodes_max is not None:
                ok = ok & (episodes <= parsed.episodes_max)
            mask &= ok
        for anchor in parsed.anchor_ids:
            if anchor in self.catalogue:
                mask[self.catalogue.row(anchor)] = False
        return mask

    def allowed_ids(self, mask: np.ndarray) -> set[int] | None:
        """The mask as the id set a vector index filters on; None when it leaves out only the anime no
        default list shows (`Catalogue.unlisted_ids`: promotional videos, adult titles) and a few more:
        a flat index looks up each allowed id, so a 27k-id set cost more than the few pool places such
        rows take before `rank` drops them."""
        excluded = int(np.count_nonzero(~mask & self.catalogue.listed_mask()))
        if excluded <= MAX_UNFILTERED_EXCLUDED_SHARE * len(mask):
            return None
        return set(self.ids[mask].tolist())

    # -- ranking -------------------------------------------------------------------------------
    def search(
        self,
        parsed: ParsedQuery,
        k: int,
        dense: DenseSearch | None = None,
        anchors: AnchorSearch | None = None,
        allowed_rows: np.ndarray | None = None,
    ) -> list[SearchHit]:
        """Filter, fetch dense/anchor pools through the callables, then `rank`."""
        lexical_raw = self.lexical_scores(parsed)
        mask = self.filter_mask(parsed, allowed_rows)
        strong = self.strong_story_matches(parsed, allowed_rows, lexical_raw)
        if strong is not None:
            mask |= strong
        if k <= 0 or not mask.any():
            return []
        allowed = self.allowed_ids(mask)
        dense_text = dense_query_text(parsed)
        dense_hits = dense(dense_text, self.weights.pool, allowed) if dense is not None and dense_text else ()
        anchor_hits: Sequence[Scored] = ()
        if anchors is not None and parsed.anchor_ids:
            anchor_hits = anchors(parsed.anchor_ids, self.weights.pool, allowed)
        return self.rank(parsed, k, dense_hits, anchor_hits, mask=mask, lexical_raw=lexical_raw)

    def lexical_scores(self, parsed: ParsedQuery) -> np.ndarray | None:
        """Raw BM25 score of every row for the query's residual text (None without a lexical index)."""
        if self.lexical is None:
            return None
        return self.lexical.scores(self.lexical.query_terms(parsed.residual)).astype(np.float64)

    def strong_story_matches(
        self,
        parsed: ParsedQuery,
        allowed_rows: np.ndarray | None,
        lexical_raw: np.ndarray | None,
        weights: HybridWeights | None = None,
    ) -> np.ndarray | None:
        """Rows the understood type/era/length filters would drop although their BM25 score is strong
        (`HybridWeights.story_override`); None when there is nothing to let through."""
        w = weights or self.weights
        understood = parsed.types or parsed.year_min is not None or parsed.year_max is not None
        understood = understood or parsed.episodes_min is not None or parsed.episodes_max is not None
        if lexical_raw is None or not w.story_override or not understood:
            return None
        # Everything but those filters still applies: the URL's, exclusions, the 'like' anchors.
        base = self.filter_mask(
            replace(parsed, types=(), year_min=None, year_max=None, episodes_min=None, episodes_max=None),
            allowed_rows,
        )
        best = float(lexical_raw[base].max(initial=0.0))
        if best <= 0.0:
            return None
        return base & (lexical_raw >= w.story_override * best)

    def rank(
        self,
        parsed: ParsedQuery,
        k: int,
        dense_hits: Sequence[Scored] = (),
        anchor_hits: Sequence[Scored] = (),
        *,
        mask: np.ndarray | None = None,
        weights: HybridWeights | None = None,
        explain: bool = True,
        lexical_raw: np.ndarray | None = None,
    ) -> list[SearchHit]:
        """Blend precomputed dense/anchor pools with lexical, tag and prior scores; best first.

        Args:
            parsed: the parsed query.
            k: how many hits.
            dense_hits / anchor_hits: (anime id, cosine) pools (already inside the filters).
            mask: `filter_mask(parsed)` when the caller has it.
            weights: override the ranker's weights (tuning).
            explain: build explanation parts (tuning skips them).
            lexical_raw: `lexical_scores(parsed)` when the caller has them.
        """
        w = weights or self.weights
        if mask is None:
            mask = self.filter_mask(parsed)
        if k <= 0 or not mask.any():
            return []
        n = len(self.ids)
        index = self.lexical
        terms = index.query_words(parsed.residual) if index is not None else {}
        if lexical_raw is None:
            lexical_raw = self.lexical_scores(parsed) if w.lexical > 0 else None
        lexical = np.zeros(n) if lexical_raw is None else lexical_raw
        best = max(float(lexical[mask].max(initial=0.0)), w.lexical_floor)
        lexical = lexical / best if best > 0 else np.zeros(n)
        tag_share = self._tag_share(parsed.boost_tags)
        dense, dense_cos = self._pool_column(dense_hits)
        anchor, anchor_cos = self._pool_column(anchor_hits)
        era = self._era_column(parsed)
        comps = {
            "dense": w.dense * dense,
            "lexical": w.lexical * lexical,
            "tags": w.tags * tag_share,
            "anchor": w.anchor * anchor,
            "era": w.era * era,
            "popularity": w.popularity * self.pop,
            "quality": w.quality * self.qual,
        }
        total = np.sum([comps[name] for name in COMPONENTS], axis=0)
        total = np.where(mask, total, -np.inf)
        candidates = np.flatnonzero(mask)
        if len(candidates) > k:
            candidates = candidates[np.argpartition(-total[candidates], k - 1)[:k]]
        order = candidates[np.lexsort((candidates, -total[candidates]))]
        return [
            SearchHit(
                int(self.ids[row]),
                float(total[row]),
                {name: float(comps[name][row]) for name in COMPONENTS},
                self._explain(int(row), parsed, terms, dense_cos, anchor_cos) if explain else (),
            )
            for row in order
        ]

    def _tag_share(self, boost_tags: Sequence[str]) -> np.ndarray:
        share = np.zeros(len(self.ids))
        if not boost_tags:
            return share
        for tag in boost_tags:
            rows = self._tag_rows.get(tag)
            if rows is not None:
                share[rows] += 1.0
        return share / len(boost_tags)

    def _pool_column(self, hits: Sequence[Scored]) -> tuple[np.ndarray, dict[int, float]]:
        column = np.zeros(len(self.ids))
        cos = {int(a): float(s) for a, s in hits if a in self.catalogue}
        if not cos:
            return column, cos
        ids = np.fromiter(cos, dtype=np.int64, count=len(cos))
        values = np.fromiter(cos.values(), dtype=np.float64, count=len(cos))
        low, high = float(values.min()), float(values.max())
        # Min–max inside the pool: cosines of one query are comparable, across queries they are not.
        scaled = (values - low) / (high - low) if high > low else np.ones(len(values))
        column[np.searchsorted(self.ids, ids)] = scaled
        return column, cos

    def _era_column(self, parsed: ParsedQuery) -> np.ndarray:
        low, high = parsed.prefer_year_min, parsed.prefer_year_max
        if low is None and high is None:
            return np.zeros(len(self.ids))
        years = self.years
        ok = ~np.isnan(years)
        filled = np.nan_to_num(years, nan=0.0)
        if low is not None:
            ok &= filled >= low
        if high is not None:
            ok &= filled <= high
        return ok.astype(np.float64)

    # -- explanations --------------------------------------------------------------------------
    def _explain(
        self,
        row: int,
        parsed: ParsedQuery,
        terms: dict[str, str],
        dense_cos: dict[int, float],
        anchor_cos: dict[int, float],
    ) -> tuple[ExplanationPart, ...]:
        anime = self.catalogue[row]
        parts: list[ExplanationPart] = []
        tags = set(anime.tags)
        for item in parsed.understood:
            if item.kind == "genre" and item.value in tags:
                parts.append(ExplanationPart("genre", item.value, (item.text,)))
            elif item.kind in {"era", "era_preference"} and anime.year is not None and _in_era(anime, parsed):
                parts.append(ExplanationPart("era", str(anime.year), (item.text,)))
            elif item.kind == "type" and anime.type.value == item.value:
                parts.append(ExplanationPart("type", item.value, (item.text,)))
            elif item.kind == "length" and anime.episodes is not None:
                parts.append(ExplanationPart("length", f"{anime.episodes} episodes", (item.text,)))
        parts = list(dict.fromkeys(parts))
        matched = self.lexical.matched_terms(row, list(terms)) if terms and self.lexical is not None else ()
        if matched:
            assert self.lexical is not None
            fields = document_fields(anime, with_synopsis=False, rule=self.lexical.rule)
            title = set(fields["title"]) | set(fields["synonyms"])
            tag_words = set(fields["tags"])
            # A matched term in none of the short fields is in the synopsis (the index has no other):
            # the synopsis is not tokenised again for every hit.
            story = set(matched) - title - tag_words
            for kind, words in (("title_words", title), ("tag_words", tag_words), ("story_terms", story)):
                # Shown as the viewer wrote them ('masked'), not as the index's terms ('mask').
                found = tuple(terms[t] for t in matched if t in words)
                if found:
                    parts.append(ExplanationPart(kind, ", ".join(found), found))
        if anime.id in dense_cos:
            parts.append(ExplanationPart("dense", f"{dense_cos[anime.id]:.3f}", weight=dense_cos[anime.id]))
        if anime.id in anchor_cos:
            names = [self.catalogue.by_id(a).title for a in parsed.anchor_ids if a in self.catalogue]
            parts.append(ExplanationPart("like", "; ".join(names), weight=anchor_cos[anime.id]))
        if not parts:
            parts.append(
                ExplanationPart("popular", f"{anime.members or 0} members", weight=float(self.pop[row]))
            )
        return tuple(parts)


def _in_era(anime: Anime, parsed: ParsedQuery) -> bool:
    year = anime.year
    if year is None:
        return False
    low = parsed.year_min if parsed.year_min is not None else parsed.prefer_year_min
    high = parsed.year_max if parsed.year_max is not None else parsed.prefer_year_max
    return (low is None or year >= low) and (high is None or year <= high)


def dense_query_text(parsed: ParsedQuery) -> str:
    """The text the dense encoder sees: the residual, or '' when it holds no content word."""
    return parsed.residual if tokens(parsed.residual) else ""
