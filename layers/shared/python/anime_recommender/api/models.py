"""Request and response models (pydantic v2): `XBase` shared fields, `XPublic` what is returned."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from anime_recommender.artifacts import Tier
from anime_recommender.catalogue import Anime, AnimeType
from anime_recommender.ranking import FRANCHISE_LIMIT, Relation
from anime_recommender.search.query import Kind as UnderstoodKind

AnimeId = Annotated[int, Field(ge=1, le=2**31 - 1, description="Anime id (MyAnimeList id where known).")]
MAX_K = 100
MAX_OFFSET = 1_000
MAX_PROFILE_IDS = 50
MAX_EXCLUDE_IDS = 500
YEAR_MIN, YEAR_MAX = 1900, 2100
_WORD = re.compile(r"[^\W_]", re.UNICODE)  # a letter or digit in any script


def _split_commas(value: object) -> object:
    """Accept both repeated params (`type=TV&type=MOVIE`) and comma lists (`type=TV,MOVIE`)."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        out: list[object] = []
        for item in value:
            if isinstance(item, str):
                out.extend(part.strip() for part in item.split(",") if part.strip())
            else:
                out.append(item)
        return out
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SafetyParams(_Strict):
    """Whether a list may show adult titles: every list route takes it, and every cache key holds it."""

    sfw: bool = Field(
        default=True,
        description="Leave adult (Rx, hentai) titles out of the list; `false` shows them. "
        "`GET /anime/{id}` answers for any id and says its `content_rating`.",
    )


class FilterParams(SafetyParams):
    """Filters every list route accepts; an anime with an unknown year/score fails a year/score filter."""

    type: list[AnimeType] = Field(default_factory=list, max_length=7, description="Allowed types (any of).")
    year_min: int | None = Field(default=None, ge=YEAR_MIN, le=YEAR_MAX)
    year_max: int | None = Field(default=None, ge=YEAR_MIN, le=YEAR_MAX)
    min_score: float | None = Field(default=None, ge=0, le=10, allow_inf_nan=False)

    @field_validator("type", mode="before")
    @classmethod
    def _types(cls, value: object) -> object:
        parsed = _split_commas(value)
        return (
            [p.upper() if isinstance(p, str) else p for p in parsed] if isinstance(parsed, list) else parsed
        )

    @field_validator("type")
    @classmethod
    def _sorted_types(cls, value: list[AnimeType]) -> list[AnimeType]:
        return sorted(set(value))

    @model_validator(mode="after")
    def _year_range(self) -> Self:
        if self.year_min is not None and self.year_max is not None and self.year_min > self.year_max:
            raise ValueError("year_min must not be greater than year_max")
        return self

    @property
    def active(self) -> bool:
        """Whether any filter narrows the catalogue."""
        return (
            bool(self.type)
            or self.year_min is not None
            or self.year_max is not None
            or (self.min_score is not None)
        )


class PageParams(_Strict):
    """Page of a ranked list."""

    k: int = Field(default=10, ge=1, le=MAX_K, description="How many results.")
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET, description="How many top results to skip.")


class SimilarQuery(FilterParams, PageParams):
    """Query parameters of `GET /anime/{id}/similar`."""

    exclude: list[AnimeId] = Field(
        default_factory=list, max_length=MAX_EXCLUDE_IDS, description="Ids never to return."
    )

    @field_validator("exclude", mode="before")
    @classmethod
    def _split_exclude(cls, value: object) -> object:
        return _split_commas(value)

    @field_validator("exclude")
    @classmethod
    def _sorted_exclude(cls, value: list[int]) -> list[int]:
        return sorted(set(value))


class AutocompleteQuery(SafetyParams):
    """Query parameters of `GET /anime`."""

    q: str = Field(min_length=1, max_length=100, description="Title fragment, any case/accents.")
    limit: int = Field(default=10, ge=1, le=50)


class SearchQuery(FilterParams, PageParams):
    """Query parameters of `GET /search` (`q` length limit is checked against settings).

    The filters given here and those understood from `q` ("90s", "movie", "no romance") both apply.
    """

    q: str = Field(
        min_length=1,
        max_length=4_096,
        description="Free text, e.g. 'space bounty hunters with a jazz soundtrack' or "
        "'90s mecha like Evangelion, no romance'.",
    )

    @field_validator("q")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("q must contain some text")
        if not _WORD.search(value):
            raise ValueError("q must contain at least one word (letters or digits), not only symbols")
        return value


class RecommendationRequest(FilterParams, PageParams):
    """A taste profile. Order of ids does not matter; duplicates are ignored."""

    liked: list[AnimeId] = Field(min_length=1, max_length=MAX_PROFILE_IDS)
    disliked: list[AnimeId] = Field(default_factory=list, max_length=MAX_PROFILE_IDS)
    exclude: list[AnimeId] = Field(
        default_factory=list, max_length=MAX_EXCLUDE_IDS, description="Already seen: never returned."
    )

    @field_validator("liked", "disliked", "exclude")
    @classmethod
    def _unique_sorted(cls, value: list[int]) -> list[int]:
        return sorted(set(value))

    @model_validator(mode="after")
    def _disjoint(self) -> Self:
        if set(self.liked) & set(self.disliked):
            raise ValueError("an id cannot be both liked and disliked")
        return self


class ImportQuery(SafetyParams, PageParams):
    """Query parameters of `POST /recommendations/import` (the body is the list file itself)."""


# ---- responses --------------------------------------------------------------------------------


class AnimeBase(BaseModel):
    """Fields every listing shows."""

    id: int
    title: str
    title_english: str | None = Field(
        default=None, description="The English title, when story text gives one that differs from `title`."
    )
    type: AnimeType
    year: int | None
    score: float | None
    episodes: int | None
    tags: list[str]
    picture: str | None
    content_rating: str | None = Field(
        default=None,
        description="MyAnimeList's content rating (g, pg, pg13, r, r_plus, rx), when the catalogue has one.",
    )
    adult: bool = Field(
        default=False, description="An adult (Rx, hentai) title: left out of lists unless `sfw=false`."
    )


def _english_title(anime: Anime) -> str | None:
    english = anime.title_english
    return english if english and english.casefold() != anime.title.casefold() else None


class AnimeSummary(AnimeBase):
    """An anime in a list."""

    @classmethod
    def of(cls, anime: Anime) -> AnimeSummary:
        """Build from the catalogue record."""
        return cls(
            id=anime.id,
            title=anime.title,
            title_english=_english_title(anime),
            type=anime.type,
            year=anime.year,
            score=anime.score,
            episodes=anime.episodes,
            tags=list(anime.tags),
            picture=anime.picture,
            content_rating=anime.content_rating,
            adult=anime.adult,
        )


class AnimePublic(AnimeBase):
    """One anime's details."""

    synonyms: list[str]
    status: str | None
    season: str | None
    members: int | None
    sources: list[str]
    synopsis: str | None = Field(
        default=None,
        description="Story text, when the build merged a synopsis file (only here: lists stay small).",
    )

    @classmethod
    def of(cls, anime: Anime) -> AnimePublic:
        """Build from the catalogue record."""
        return cls(
            **AnimeSummary.of(anime).model_dump(),
            synonyms=list(anime.synonyms),
            status=anime.status,
            season=anime.season,
            members=anime.members,
            sources=list(anime.sources),
            synopsis=anime.synopsis,
        )


class AnimeRef(BaseModel):
    """A pointer to another anime in an explanation."""

    id: int
    title: str


class Explanation(BaseModel):
    """Why a result is similar: shared tags and score/year/type proximity, plus ranking components."""

    shared_tags: list[str] = Field(description="Tags both anime have, in the query anime's order.")
    same_type: bool
    year_difference: int | None = Field(description="|Δ year|; null when either year is unknown.")
    score_difference: float | None = Field(description="|Δ MAL score|; null when either is unknown.")
    because_you_liked: AnimeRef | None = Field(
        default=None, description="The liked anime this recommendation is closest to (recommendations only)."
    )
    components: dict[str, float] | None = Field(
        default=None, description="Weighted parts of the final ranking score (V4 tier), summing to it."
    )
    summary: str = Field(description="One human-readable sentence.")


class ScoredAnime(BaseModel):
    """A ranked result."""

    anime: AnimeSummary
    similarity: float = Field(description="Ranking score (cosine in V4/V3, teacher score in V2).")
    explanation: Explanation | None = None


class PagePublic(BaseModel):
    """A page of ranked results."""

    tier: Tier
    k: int
    offset: int
    next_offset: int | None = Field(description="Offset of the next page; null when this page is short.")
    items: list[ScoredAnime]


class FranchiseEntryPublic(BaseModel):
    """A franchise sibling of the query anime (sequel, prequel, movie, side story...)."""

    anime: AnimeSummary
    relation: Relation = Field(
        description="Guessed from the two entries' formats and release order: 'movie' (a movie of a "
        "series), 'side story' (an OVA/special/music video), 'parent story' (the series of a movie "
        "or OVA), 'prequel'/'sequel' (released before/after), 'same franchise' (order unknown)."
    )


class SimilarPublic(PagePublic):
    """Response of `GET /anime/{id}/similar`: recommendations, and the anime's franchise apart."""

    query: AnimeSummary
    items: list[ScoredAnime] = Field(
        description="k cross-franchise recommendations, best first: never the anime itself or one of "
        "its franchise siblings, and one entry per other franchise before any second entry of it. "
        "Filters, `exclude` and paging (`k`, `offset`, `next_offset`) apply to this list only."
    )
    franchise: list[FranchiseEntryPublic] = Field(
        description=f"The anime's franchise siblings, ordered by release (year, then season, then id; "
        f"unknown years last). Neither filtered nor paged: the same on every page. At most "
        f"{FRANCHISE_LIMIT}: the best-known ones (most members) when the franchise is longer."
    )
    franchise_total: int = Field(description="How many franchise siblings the catalogue has.")


class RecommendationsPublic(PagePublic):
    """Response of `POST /recommendations`."""

    items: list[ScoredAnime] = Field(
        description="k recommendations, best first: never a liked, disliked or excluded anime, nor a "
        "franchise sibling of a liked one (the viewer knows that franchise; `GET /anime/{id}/similar` "
        "lists it under `franchise`); one entry per franchise before any second entry of it."
    )
    strategy: str = Field(description="How the profile was combined.")


class ContinueEntryPublic(BaseModel):
    """An unwatched entry of a franchise the viewer completed or is watching."""

    anime: AnimeSummary
    after: AnimeRef = Field(description="The latest-released entry of this franchise the viewer watched.")
    relation: Relation = Field(description="How `anime` relates to `after` (as `franchise` entries say).")


class ImportCountsPublic(BaseModel):
    """What the uploaded list held."""

    entries: int = Field(description="Distinct anime on the list.")
    by_status: dict[str, int] = Field(
        description="Entries per status: watching, completed, on_hold, dropped, plan_to_watch."
    )
    matched: int = Field(description="Entries found in the catalogue.")
    unknown: int = Field(description="Entries whose id is not in the catalogue (`unknown_ids`).")
    skipped: int = Field(
        description="Malformed entries left out: an id that is not a positive number, an unknown status."
    )
    duplicates: int = Field(description="Repeated entries merged into one.")
    liked: int = Field(description="Entries read as likes (weighted by score).")
    disliked: int = Field(description="Entries read as dislikes.")


class ImportPublic(PagePublic):
    """Response of `POST /recommendations/import`."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    items: list[ScoredAnime] = Field(
        description="k recommendations, best first: never an anime on the list (Plan to Watch included) "
        "or a franchise sibling of a liked one; each says which favourite it is closest to "
        "(`explanation.because_you_liked`)."
    )
    continue_watching: list[ContinueEntryPublic] = Field(
        alias="continue",
        description="The next unwatched entries of franchises the viewer completed or is watching: TV "
        "seasons, movies and web series in release order, then OVAs and specials; watching first, "
        "then completed by score. The same on every page.",
    )
    unknown_ids: list[int] = Field(description="List ids the catalogue does not have (at most 1,000).")
    counts: ImportCountsPublic
    strategy: str = Field(description="How the list became a taste.")


MatchKind = Literal[
    "genre", "era", "type", "length", "title_words", "tag_words", "story_terms", "dense", "like", "popular"
]


class UnderstoodPublic(BaseModel):
    """One part of the query that was understood."""

    kind: UnderstoodKind = Field(
        description="What it is: a genre/theme boost, an exclusion, a filter, a title named."
    )
    text: str = Field(description="The query words it came from.")
    value: str = Field(description="What they were read as, e.g. 'music', 'MOVIE', '1990–1999'.")
    hard: bool = Field(description="True: a filter (results must satisfy it); False: a boost.")
    anime_id: int | None = Field(default=None, description="The anime a title part names.")


class SearchQueryPublic(BaseModel):
    """What `/search` made of `q`."""

    text: str = Field(description="The query as searched (whitespace collapsed, cut at 500 characters).")
    understood: list[UnderstoodPublic] = Field(description="Parts understood, in query order.")
    residual: str | None = Field(
        description="The words left for the lexical and dense search (folded); null when none are left."
    )


class SearchMatchPublic(BaseModel):
    """One reason a search result matched."""

    kind: MatchKind
    value: str = Field(description="What matched, e.g. 'music', '1998', 'bebop', '0.612' (cosine).")
    terms: list[str] = Field(description="The query words involved (empty for dense/like/popular).")


class SearchExplanation(BaseModel):
    """Why a search result is there: the query parts it matched and the weighted score parts."""

    matched: list[SearchMatchPublic] = Field(
        description="Genres, era, type, length, title words, tag words, story terms, dense similarity, "
        "'like' anchor; or 'popular' when nothing in the query could match."
    )
    components: dict[str, float] = Field(
        description="Weighted parts of the score (dense, lexical, tags, anchor, era, popularity, "
        "quality), summing to it."
    )
    summary: str = Field(description="One human-readable line.")
    snippet: str | None = Field(
        default=None, description="The synopsis sentence that holds the matched story words, when any."
    )


class SearchItem(BaseModel):
    """A search result."""

    anime: AnimeSummary
    similarity: float = Field(description="Hybrid ranking score (the sum of `explanation.components`).")
    explanation: SearchExplanation


class SearchPublic(BaseModel):
    """Response of `GET /search`."""

    query: SearchQueryPublic
    tier: Tier
    mode: Literal["hybrid", "lexical", "dense"] = Field(
        description="hybrid: lexical + dense + understanding (V4/V3); lexical: no encoder (tier V2), "
        "lexical + understanding + priors; dense: the lexical index is unavailable."
    )
    k: int
    offset: int
    next_offset: int | None = Field(description="Offset of the next page; null when this page is short.")
    items: list[SearchItem]


class TitleMatchPublic(BaseModel):
    """An autocomplete suggestion."""

    anime: AnimeSummary
    matched: str = Field(description="The title or synonym that matched.")
    match: Literal["exact", "prefix", "word_prefix", "fuzzy"]


class AutocompletePublic(BaseModel):
    """Response of `GET /anime`."""

    query: str
    items: list[TitleMatchPublic]


class HealthPublic(BaseModel):
    """Response of `GET /health`."""

    status: Literal["ok", "degraded"]
    tier: Tier
    model_version: str
    data_version: str
    catalogue_size: int
    init_ms: float | None = Field(description="Cold-start initialisation time of this container.")
    failures: list[str] = Field(description="Artifacts that failed to load (why the tier is lower).")
    cache: str = Field(description="dynamodb, lru or none.")
    text_search: bool = Field(
        description="Whether /search answers (the lexical index or the encoder loaded; lexical-only in V2)."
    )


class Problem(BaseModel):
    """RFC 9457 problem details (`application/problem+json`)."""

    type: str = Field(description="URI reference identifying the problem type.")
    title: str
    status: int
    detail: str
    instance: str = Field(description="The request path.")
    errors: list[dict[str, Any]] | None = Field(default=None, description="Per-field validation errors.")
