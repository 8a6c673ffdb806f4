"""Free-text search end to end: parse, filter, pool, rank, explain (the one path /search serves).

`SearchEngine` is built once per loaded bundle (the API's cold start, the offline evaluation) from
the catalogue, its lexical index and the dense/anchor pools the active tier offers, and answers
`search(text, k, allowed_rows)` with the parse and the ranked hits. What it can use sets its mode:

* ``hybrid`` — lexical + dense + query understanding + priors (tiers V4/V3);
* ``lexical`` — no encoder (tier V2): lexical + understanding + priors, anchors from the V2 lists;
* ``dense`` — the lexical index failed to load: dense + understanding + priors.

With neither a lexical index nor an encoder there is nothing to search with (`available` is False).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from anime_recommender.catalogue import Catalogue
from anime_recommender.search.hybrid import (
    AnchorSearch,
    DenseSearch,
    ExplanationPart,
    HybridRanker,
    HybridWeights,
    SearchHit,
)
from anime_recommender.search.lexical import LexicalIndex
from anime_recommender.search.normalise import stem, tokens
from anime_recommender.search.query import ParsedQuery, QueryParser, TitleMatcher

SearchMode = Literal["hybrid", "lexical", "dense"]


@dataclass(frozen=True, slots=True)
class SearchResult:
    """What a search understood and found (best first)."""

    parsed: ParsedQuery
    hits: list[SearchHit]
    mode: SearchMode


class SearchEngine:
    """Query parser + hybrid ranker over one catalogue (see the module docstring).

    Args:
        catalogue: the anime served.
        lexical: its BM25 index, None when unavailable.
        dense: free text → (id, cosine) pool, None without an encoder.
        anchors: anchor ids → (id, similarity) pool for "like …" queries.
        matcher: the API's title index, for looser title matches after a cue (optional).
        exact_titles: the parser's exact-title table of this catalogue when already built
            (`catalogue_tables`); None builds it here.
        weights: the blend's weights (default: `hybrid.weights_for(catalogue)`).
    """

    def __init__(
        self,
        catalogue: Catalogue,
        lexical: LexicalIndex | None,
        *,
        dense: DenseSearch | None = None,
        anchors: AnchorSearch | None = None,
        matcher: TitleMatcher | None = None,
        weights: HybridWeights | None = None,
        exact_titles: Mapping[str, int] | None = None,
    ) -> None:
        self.catalogue = catalogue
        self.parser = QueryParser.for_catalogue(catalogue, matcher=matcher, exact_titles=exact_titles)
        self.ranker = HybridRanker(catalogue, lexical, weights)
        self.dense = dense
        self.anchors = anchors
        self.mode: SearchMode = "dense" if lexical is None else "hybrid" if dense is not None else "lexical"

    @property
    def available(self) -> bool:
        """Whether anything can match text (a lexical index or an encoder)."""
        return self.ranker.lexical is not None or self.dense is not None

    def search(self, text: str, k: int, allowed_rows: np.ndarray | None = None) -> SearchResult:
        """Parse `text` and rank up to k hits inside `allowed_rows` (a row mask: the URL filters).

        The URL filters and those understood from the text both apply. A query with nothing to
        match (only stop words, only a negation, only filters) ranks by the priors: popular within
        the filters. Content words that match nothing anywhere (no lexical term, no encoder, no
        understood part) give no hits rather than an unrelated popular list.
        """
        parsed = self.parser.parse(text)
        if self._unmatchable(parsed):
            return SearchResult(parsed, [], self.mode)
        hits = self.ranker.search(
            parsed, k, dense=self.dense, anchors=self.anchors, allowed_rows=allowed_rows
        )
        return SearchResult(parsed, hits, self.mode)

    def _unmatchable(self, parsed: ParsedQuery) -> bool:
        if self.dense is not None or parsed.boost_tags or parsed.anchor_ids or parsed.title_ids:
            return False
        if not tokens(parsed.residual):
            return False  # nothing asked beyond the filters: popular within them
        lexical = self.ranker.lexical
        return lexical is None or not lexical.query_terms(parsed.residual)


_LABELS = {"title_words": "title words", "tag_words": "tag words", "story_terms": "story terms"}


def explanation_summary(parts: Sequence[ExplanationPart]) -> str:
    """One line from a hit's explanation parts, e.g. "Matches genres music, space; from 1998."."""
    genres = [p.value for p in parts if p.kind == "genre"]
    genre_words = {w for g in genres for w in tokens(g)}
    phrases: list[str] = []
    if genres:
        phrases.append(("genre " if len(genres) == 1 else "genres ") + ", ".join(genres))
    for part in parts:
        if part.kind == "era":
            phrases.append(f"from {part.value}")
        elif part.kind == "type":
            phrases.append(f"a {part.value}")
        elif part.kind == "length":
            phrases.append(part.value)
        elif part.kind in _LABELS:
            # Tag words that only repeat a matched genre ("mecha") add nothing to the line.
            terms = [t for t in part.terms if part.kind != "tag_words" or stem(t) not in genre_words]
            if terms:
                phrases.append(f"{_LABELS[part.kind]} {', '.join(terms)}")
        elif part.kind == "dense":
            phrases.append(f"close in meaning (dense score {part.value})")
        elif part.kind == "like":
            phrases.append(f"like {part.value}")
    if phrases:
        return "Matches " + "; ".join(phrases) + "."
    popular = next((p for p in parts if p.kind == "popular"), None)
    members = f" ({popular.value})" if popular is not None else ""
    return f"Popular within the filters{members}: nothing in the query to match."
