"""The V2 teacher: a multi-feature similarity between two anime, and all-pairs top-K.

For a pair (a, b) with feature similarities in [0, 1]:

* tags (60 %): IDF-weighted Jaccard over tag *sets*,
  ``tag = sum_{t in A∩B} w_t / sum_{t in A∪B} w_t`` with ``w_t = ln((1 + N) / (1 + df_t)) + 1``
  (N anime, df_t anime carrying tag t), so a shared rare tag ("space", "samurai") counts several
  times more than a shared ubiquitous one ("comedy"). ``tag_measure="cosine"`` switches to the
  IDF-weighted cosine ``sum_{A∩B} w² / (‖w_A‖ ‖w_B‖)``. An anime without tags has tag similarity 0.
* score (20 %): ``1 - min(|s_a - s_b| / score_scale, 1)``; a gap of `score_scale` points (default 3
  on MAL's 1–10 scale) or more counts as unrelated.
* year (15 %): ``1 - min(|y_a - y_b| / tol, 1)`` where the tolerance shrinks with recency:
  ``tol`` is interpolated linearly on ``max(y_a, y_b)`` from `year_tolerance_old` years
  (≤ `year_old`) down to `year_tolerance_recent` years (≥ `year_recent`). Recent anime move in
  faster trends and are far more numerous, so a five-year gap in 2015–2020 separates more than
  one in 1975–1980.
* type (5 %): a symmetric compatibility matrix over TV/MOVIE/OVA/ONA/SPECIAL/MUSIC
  (`TYPE_COMPATIBILITY`), e.g. TV–ONA 0.8, OVA–SPECIAL 0.8, TV–MOVIE 0.5, MUSIC–TV 0.1.

``V2(a, b) = sum_f w_f * sim_f / sum_f w_f`` over the features *known for both*: a missing score,
year, or type (UNKNOWN) drops that feature's weight for the pair and the rest is renormalised,
so a missing field neither rewards nor punishes the pair. Tags are never dropped (60 % always
counts), so two anime known only by their scores cannot look identical. Self-pairs are excluded
from neighbour lists.

The vectorised path (`TeacherFeatures`, `top_k_neighbours`) computes exactly that formula over
blocks of rows × the whole catalogue in float32; `v2_similarity` is the slow reference.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Literal

import numpy as np

from anime_recommender.catalogue import Anime, AnimeType, Catalogue
from anime_recommender.neighbours import NeighbourLists
from anime_recommender.topk import top_k_blockwise

# Types the matrix knows; UNKNOWN is "missing", not a type.
KNOWN_TYPES: tuple[AnimeType, ...] = (
    AnimeType.TV,
    AnimeType.MOVIE,
    AnimeType.OVA,
    AnimeType.ONA,
    AnimeType.SPECIAL,
    AnimeType.MUSIC,
    AnimeType.PROMO,
)

# Upper triangle of the symmetric compatibility matrix; the diagonal is 1.
# Episodic formats (TV, ONA) are close; OVAs and specials are mostly side stories of TV series;
# films share a franchise's story but not its pacing; music videos are their own thing.
_TYPE_PAIRS: dict[tuple[AnimeType, AnimeType], float] = {
    (AnimeType.TV, AnimeType.MOVIE): 0.5,
    (AnimeType.TV, AnimeType.OVA): 0.6,
    (AnimeType.TV, AnimeType.ONA): 0.8,
    (AnimeType.TV, AnimeType.SPECIAL): 0.6,
    (AnimeType.TV, AnimeType.MUSIC): 0.1,
    (AnimeType.MOVIE, AnimeType.OVA): 0.6,
    (AnimeType.MOVIE, AnimeType.ONA): 0.4,
    (AnimeType.MOVIE, AnimeType.SPECIAL): 0.5,
    (AnimeType.MOVIE, AnimeType.MUSIC): 0.2,
    (AnimeType.OVA, AnimeType.ONA): 0.7,
    (AnimeType.OVA, AnimeType.SPECIAL): 0.8,
    (AnimeType.OVA, AnimeType.MUSIC): 0.2,
    (AnimeType.ONA, AnimeType.SPECIAL): 0.7,
    (AnimeType.ONA, AnimeType.MUSIC): 0.2,
    (AnimeType.SPECIAL, AnimeType.MUSIC): 0.3,
    # Commercials and promotional videos resemble nothing but each other (and barely music videos).
    **{(t, AnimeType.PROMO): 0.1 for t in (AnimeType.TV, AnimeType.MOVIE, AnimeType.OVA, AnimeType.ONA)},
    (AnimeType.SPECIAL, AnimeType.PROMO): 0.2,
    (AnimeType.MUSIC, AnimeType.PROMO): 0.3,
}


def _type_matrix() -> dict[tuple[AnimeType, AnimeType], float]:
    matrix = {(t, t): 1.0 for t in KNOWN_TYPES}
    for (a, b), value in _TYPE_PAIRS.items():
        matrix[(a, b)] = matrix[(b, a)] = value
    return matrix


TYPE_COMPATIBILITY: dict[tuple[AnimeType, AnimeType], float] = _type_matrix()

# A missing score becomes a sentinel so far from every real score (and from every other
# sentinel) that the clipped score penalty is maximal, i.e. the score term vanishes.
_SCORE_SENTINEL = 1.0e4


@dataclass(frozen=True)
class TeacherConfig:
    """Weights and shape parameters of the V2 formula (see the module docstring)."""

    tag_weight: float = 0.60
    score_weight: float = 0.20
    year_weight: float = 0.15
    type_weight: float = 0.05
    tag_measure: Literal["jaccard", "cosine"] = "jaccard"
    score_scale: float = 3.0
    year_tolerance_old: float = 20.0
    year_tolerance_recent: float = 6.0
    year_old: int = 1970
    year_recent: int = 2020
    type_compatibility: dict[tuple[AnimeType, AnimeType], float] = field(
        default_factory=lambda: dict(TYPE_COMPATIBILITY)
    )

    def __post_init__(self) -> None:
        weights = (self.tag_weight, self.score_weight, self.year_weight, self.type_weight)
        if min(weights) < 0 or self.tag_weight <= 0:
            raise ValueError("feature weights must be >= 0 and the tag weight > 0")
        if self.tag_measure not in ("jaccard", "cosine"):
            raise ValueError(f"unknown tag_measure {self.tag_measure!r}")
        if self.score_scale <= 0 or self.year_tolerance_old <= 0 or self.year_tolerance_recent <= 0:
            raise ValueError("score_scale and year tolerances must be > 0")
        if self.year_recent <= self.year_old:
            raise ValueError("year_recent must be after year_old")
        for a in KNOWN_TYPES:
            for b in KNOWN_TYPES:
                value = self.type_compatibility.get((a, b))
                if value is None or value != self.type_compatibility.get((b, a)) or not 0 <= value <= 1:
                    raise ValueError(f"type_compatibility must be a symmetric [0, 1] matrix ({a}, {b})")

    def year_tolerance(self, latest_year: float) -> float:
        """Years of difference at which year similarity reaches 0, given the later year of the pair."""
        frac = (latest_year - self.year_old) / (self.year_recent - self.year_old)
        frac = min(max(frac, 0.0), 1.0)
        return self.year_tolerance_old + frac * (self.year_tolerance_recent - self.year_tolerance_old)


def tag_idf(df: int, n_anime: int) -> float:
    """Smoothed IDF weight of a tag carried by `df` of `n_anime` anime (> 0 even for df = N)."""
    return math.log((1 + n_anime) / (1 + df)) + 1.0


@dataclass(frozen=True)
class TeacherStats:
    """Catalogue-wide statistics the pairwise formula needs: the config and tag document frequencies."""

    config: TeacherConfig
    n_anime: int
    tag_df: dict[str, int]

    @classmethod
    def from_catalogue(cls, catalogue: Iterable[Anime], config: TeacherConfig | None = None) -> TeacherStats:
        """Count each tag once per anime."""
        return cls.from_tag_sets([set(anime.tags) for anime in catalogue], config)

    @classmethod
    def from_tag_sets(
        cls, tag_sets: Sequence[Collection[str]], config: TeacherConfig | None = None
    ) -> TeacherStats:
        """`from_catalogue` from each anime's distinct tags (one C-level count over all of them)."""
        df = Counter(chain.from_iterable(tag_sets))
        return cls(config=config or TeacherConfig(), n_anime=len(tag_sets), tag_df=dict(df))

    def tag_weight(self, tag: str) -> float:
        """IDF weight of a tag (a tag unknown to the catalogue counts as df = 0)."""
        return tag_idf(self.tag_df.get(tag, 0), self.n_anime)


def v2_components(a: Anime, b: Anime, stats: TeacherStats) -> dict[str, float | None]:
    """Each feature's similarity in [0, 1] for the pair, None when the feature is missing for it."""
    cfg = stats.config
    tags_a, tags_b = set(a.tags), set(b.tags)
    if cfg.tag_measure == "jaccard":
        union = sum(stats.tag_weight(t) for t in tags_a | tags_b)
        tag = sum(stats.tag_weight(t) for t in tags_a & tags_b) / union if union > 0 else 0.0
    else:
        norm_a = math.sqrt(sum(stats.tag_weight(t) ** 2 for t in tags_a))
        norm_b = math.sqrt(sum(stats.tag_weight(t) ** 2 for t in tags_b))
        shared = sum(stats.tag_weight(t) ** 2 for t in tags_a & tags_b)
        tag = shared / (norm_a * norm_b) if norm_a > 0 and norm_b > 0 else 0.0
    score = None
    if a.score is not None and b.score is not None:
        score = 1.0 - min(abs(a.score - b.score) / cfg.score_scale, 1.0)
    year = None
    if a.year is not None and b.year is not None:
        year = 1.0 - min(abs(a.year - b.year) / cfg.year_tolerance(max(a.year, b.year)), 1.0)
    kind = None
    if a.type is not AnimeType.UNKNOWN and b.type is not AnimeType.UNKNOWN:
        kind = cfg.type_compatibility[(a.type, b.type)]
    return {"tags": tag, "score": score, "year": year, "type": kind}


def v2_similarity(a: Anime, b: Anime, stats: TeacherStats) -> float:
    """The V2 similarity of one pair, in pure Python: the reference the vectorised path must match."""
    cfg = stats.config
    weights = {
        "tags": cfg.tag_weight,
        "score": cfg.score_weight,
        "year": cfg.year_weight,
        "type": cfg.type_weight,
    }
    num = den = 0.0
    for name, value in v2_components(a, b, stats).items():
        if value is not None:
            num += weights[name] * value
            den += weights[name]
    return num / den


@dataclass(frozen=True)
class TeacherFeatures:
    """Per-anime arrays for the vectorised V2 formula.

    All weights are divided by the tag weight (the formula is a ratio, so this changes nothing)
    which lets the tag term enter unscaled. Arrays named `*_rows` are in catalogue row order;
    the column side of the all-pairs product is permuted (`col_order`) so that anime with the
    same (year, type, score known) code are contiguous: the year/type/missing-field part of the
    formula is then one scalar per (row, code group) instead of a gather per pair.

    * `tags_left @ tags_right_cols.T` plus the sparse contributions of the rare tags is the tag
      term (Jaccard: Σ shared w, then divided by ``mass_i + mass_j - shared``; cosine: the cosine).
      Tags carried by a single anime can never be shared, so they only count in `tag_mass`.
      Only frequent tags (df ≥ `dense_tag_share` · N) go into the dense BLAS matrices; a rare tag
      touches few pairs (Σ df² ≪ N² · n_tags), so its pairs are added sparsely from posting lists
      (`rare_*`, CSR by row and by tag). That keeps ~2k-tag manami catalogues as fast as 40 genres.
    * `score_scaled` is ``score * w_score / (w_tag * score_scale)``, a far-away sentinel when
      missing, so ``min(|Δ|, w_score / w_tag)`` is the score penalty (maximal when missing).
    * `pair_table[ci, cj]` = year + type numerator + w_score (per code pair);
      `inv_den_table[ci, cj]` = 1 / (sum of the weights known for that code pair).
    """

    ids: np.ndarray
    stats: TeacherStats
    tags_left: np.ndarray
    tags_right_cols: np.ndarray
    rare_row_ptr: np.ndarray
    rare_row_tags: np.ndarray
    rare_row_vals: np.ndarray
    rare_tag_ptr: np.ndarray
    rare_tag_cols: np.ndarray
    rare_tag_vals: np.ndarray
    tag_mass_rows: np.ndarray
    tag_mass_cols: np.ndarray
    score_rows: np.ndarray
    score_cols: np.ndarray
    code_rows: np.ndarray
    col_order: np.ndarray
    col_position: np.ndarray
    group_bounds: np.ndarray
    pair_table: np.ndarray
    inv_den_table: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def config(self) -> TeacherConfig:
        """The formula's configuration."""
        return self.stats.config

    @property
    def n_tags(self) -> int:
        """Number of shareable tags (df ≥ 2): dense columns plus sparse rare tags."""
        return int(self.tags_left.shape[1] + self.rare_tag_ptr.size - 1)

    @property
    def n_dense_tags(self) -> int:
        """Number of tags in the dense matrices."""
        return int(self.tags_left.shape[1])

    def _rare_pairs(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(local row, column position, value) of every rare-tag contribution for `rows`."""
        starts, ends = self.rare_row_ptr[rows], self.rare_row_ptr[rows + 1]
        local, entry = _expand(starts, ends)
        tags = self.rare_row_tags[entry]
        t_start, t_end = self.rare_tag_ptr[tags], self.rare_tag_ptr[tags + 1]
        which, post = _expand(t_start, t_end)
        value = self.rare_row_vals[entry][which] * self.rare_tag_vals[post]
        return local[which], self.rare_tag_cols[post], value

    def _tag_overlap(self, rows: np.ndarray) -> np.ndarray:
        """Σ over shared tags of left·right, for `rows` × all columns (col order)."""
        sim = self.tags_left[rows] @ self.tags_right_cols.T
        local, cols, value = self._rare_pairs(rows)
        if value.size:
            flat = local * sim.shape[1] + cols
            uniq, inverse = np.unique(flat, return_inverse=True)
            sim.reshape(-1)[uniq] += np.bincount(inverse, weights=value).astype(np.float32)
        return sim

    @classmethod
    def from_catalogue(
        cls, catalogue: Catalogue, config: TeacherConfig | None = None, dense_tag_share: float = 0.02
    ) -> TeacherFeatures:
        """Build the arrays for a catalogue (`dense_tag_share` only trades speed, never changes scores)."""
        cfg = config or TeacherConfig()
        # One flat pass in row order (each row's tags sorted), then numpy: a delta update rebuilds
        # these arrays for the whole catalogue on every run.
        tag_sets = [sorted(set(anime.tags)) for anime in catalogue]
        stats = TeacherStats.from_tag_sets(tag_sets, cfg)
        n = len(catalogue)
        threshold = max(2.0, dense_tag_share * n)
        dense_tags = sorted(t for t, df in stats.tag_df.items() if df >= threshold)
        rare_tags = sorted(t for t, df in stats.tag_df.items() if 2 <= df < threshold)
        power = 1 if cfg.tag_measure == "jaccard" else 2
        # Sparse (row, tag) entries, dense and rare apart; no n × n_tags matrix of all tags is built.
        all_tags = list(stats.tag_df)
        code_of = {t: i for i, t in enumerate(all_tags)}
        entry_tag = np.fromiter(map(code_of.__getitem__, chain.from_iterable(tag_sets)), dtype=np.int64)
        entry_row = np.repeat(np.arange(n), np.fromiter(map(len, tag_sets), dtype=np.int64, count=n))
        weight = np.array([stats.tag_weight(t) ** power for t in all_tags], dtype=np.float64)
        # bincount adds each row's weights in entry order: the same sums as a Python loop.
        mass = np.bincount(entry_row, weights=weight[entry_tag], minlength=n).astype(np.float64)
        dense_of = np.full(len(all_tags), -1, dtype=np.int64)
        dense_of[[code_of[t] for t in dense_tags]] = np.arange(len(dense_tags))
        rare_of = np.full(len(all_tags), -1, dtype=np.int64)
        rare_of[[code_of[t] for t in rare_tags]] = np.arange(len(rare_tags))
        is_dense = dense_of[entry_tag] >= 0
        is_rare = rare_of[entry_tag] >= 0
        d_rows, d_tags = entry_row[is_dense], dense_of[entry_tag[is_dense]]
        r_rows, r_tags = entry_row[is_rare], rare_of[entry_tag[is_rare]]
        dense_w = np.array([stats.tag_weight(t) for t in dense_tags], dtype=np.float64)
        rare_w = np.array([stats.tag_weight(t) for t in rare_tags], dtype=np.float64)
        if cfg.tag_measure == "jaccard":
            # Rows without tags: any positive mass keeps 0 / (mass_i + mass_j - 0) finite and 0.
            tag_mass = np.where(mass > 0, mass, 1.0)
            row_scale = np.ones(n)
        else:
            tag_mass = np.sqrt(mass)
            tag_mass[tag_mass == 0] = 1.0
            row_scale = 1.0 / tag_mass

        def values(rows: np.ndarray, tags: np.ndarray, w: np.ndarray, side: str) -> np.ndarray:
            r, t = np.asarray(rows, dtype=np.int64), np.asarray(tags, dtype=np.int64)
            if cfg.tag_measure == "jaccard":  # left carries the weight, right is binary
                return w[t] if side == "left" else np.ones(r.size)
            return w[t] * row_scale[r]

        w_score = cfg.score_weight / cfg.tag_weight
        scores = catalogue.numbers("score")
        missing = np.isnan(scores)
        scaled = scores * w_score / cfg.score_scale
        # Distinct sentinels more than w_score apart, so two missing scores also get the full penalty.
        scaled[missing] = _SCORE_SENTINEL + (w_score + 1.0) * np.arange(int(missing.sum()))

        code, pair_table, inv_den_table = _code_tables(catalogue, cfg)
        col_order = np.argsort(code, kind="stable")
        col_position = np.empty(n, dtype=np.int64)
        col_position[col_order] = np.arange(n)
        bounds = np.searchsorted(code[col_order], np.arange(pair_table.shape[0] + 1))

        left = np.zeros((n, len(dense_tags)), dtype=np.float32)
        right_cols = np.zeros((n, len(dense_tags)), dtype=np.float32)
        left[d_rows, d_tags] = values(d_rows, d_tags, dense_w, "left")
        right_cols[col_position[np.asarray(d_rows, dtype=np.int64)], d_tags] = values(
            d_rows, d_tags, dense_w, "right"
        )
        # Rare tags as CSR: per row (tag, left value) in row order; per tag (column position, right value).
        rr = np.asarray(r_rows, dtype=np.int64)
        rt = np.asarray(r_tags, dtype=np.int64)
        row_ptr = np.searchsorted(rr, np.arange(n + 1))
        t_cols = col_position[rr]
        by_tag = np.lexsort((t_cols, rt))
        tag_ptr = np.searchsorted(rt[by_tag], np.arange(len(rare_tags) + 1))
        right_vals = values(r_rows, r_tags, rare_w, "right")
        return cls(
            ids=np.asarray(catalogue.ids, dtype=np.int64),
            stats=stats,
            tags_left=left,
            tags_right_cols=right_cols,
            rare_row_ptr=row_ptr,
            rare_row_tags=rt,
            rare_row_vals=values(r_rows, r_tags, rare_w, "left").astype(np.float32),
            rare_tag_ptr=tag_ptr,
            rare_tag_cols=t_cols[by_tag],
            rare_tag_vals=right_vals[by_tag].astype(np.float32),
            tag_mass_rows=tag_mass.astype(np.float32),
            tag_mass_cols=tag_mass[col_order].astype(np.float32),
            score_rows=scaled.astype(np.float32),
            score_cols=scaled[col_order].astype(np.float32),
            code_rows=code,
            col_order=col_order,
            col_position=col_position,
            group_bounds=bounds,
            pair_table=pair_table,
            inv_den_table=inv_den_table,
        )

    def block_scores_cols(self, rows: np.ndarray) -> np.ndarray:
        """V2 similarity of `rows` against every anime, columns in `col_order`: float32 [len(rows), n]."""
        cfg = self.config
        sim = self._tag_overlap(rows)
        buf = np.empty_like(sim)
        if cfg.tag_measure == "jaccard":
            # tag = I / (W_i + W_j - I)
            np.subtract(self.tag_mass_cols[None, :], sim, out=buf)
            buf += self.tag_mass_rows[rows, None]
            np.divide(sim, buf, out=sim)
        np.subtract(self.score_cols[None, :], self.score_rows[rows, None], out=buf)
        np.abs(buf, out=buf)
        np.minimum(buf, np.float32(cfg.score_weight / cfg.tag_weight), out=buf)
        sim -= buf
        codes = self.code_rows[rows]
        add = self.pair_table[codes]
        mul = self.inv_den_table[codes]
        bounds = self.group_bounds
        for g in range(add.shape[1]):
            lo, hi = bounds[g], bounds[g + 1]
            if hi > lo:
                part = sim[:, lo:hi]
                part += add[:, g : g + 1]
                part *= mul[:, g : g + 1]
        return sim

    def block_scores(self, rows: np.ndarray) -> np.ndarray:
        """V2 similarity of `rows` against every anime in row order: float32 [len(rows), n].

        Self-pair entries are meaningless (single-anime tags and missing-score sentinels only
        cancel between *different* anime); neighbour lists exclude them.
        """
        return self.block_scores_cols(np.asarray(rows, dtype=np.int64))[:, self.col_position]

    def pair_scores(self, rows_a: np.ndarray, rows_b: np.ndarray, chunk: int = 65536) -> np.ndarray:
        """V2 similarity of the pairs (rows_a[i], rows_b[i]) with rows_a[i] != rows_b[i]: float32."""
        rows_a = np.asarray(rows_a, dtype=np.int64)
        rows_b = np.asarray(rows_b, dtype=np.int64)
        if rows_a.shape != rows_b.shape:
            raise ValueError("rows_a and rows_b must have the same shape")
        cap = np.float32(self.config.score_weight / self.config.tag_weight)
        out = np.empty(rows_a.shape[0], dtype=np.float32)
        for start in range(0, rows_a.shape[0], chunk):
            a, b = rows_a[start : start + chunk], rows_b[start : start + chunk]
            cb = self.col_position[b]
            tag = np.einsum("ij,ij->i", self.tags_left[a], self.tags_right_cols[cb])
            local, cols, value = self._rare_pairs(a)
            hit = cols == cb[local]
            tag += np.bincount(local[hit], weights=value[hit], minlength=a.size).astype(np.float32)
            if self.config.tag_measure == "jaccard":
                tag = tag / (self.tag_mass_rows[a] + self.tag_mass_cols[cb] - tag)
            pen = np.minimum(np.abs(self.score_cols[cb] - self.score_rows[a]), cap)
            ca, cc = self.code_rows[a], self.code_rows[b]
            out[start : start + chunk] = (tag - pen + self.pair_table[ca, cc]) * self.inv_den_table[ca, cc]
        return out


def _expand(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate the ranges [starts[i], ends[i]): (index i of each element, the element)."""
    lengths = ends - starts
    owner = np.repeat(np.arange(lengths.size), lengths)
    offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return owner, starts[owner] + offsets


def _code_tables(catalogue: Catalogue, cfg: TeacherConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense codes for each anime's (year, type, score known) and the per-code-pair tables.

    Weights are relative to the tag weight; `pair_table` includes the score weight, which the
    score penalty cancels exactly when a score is missing.
    """
    type_index = {t: i for i, t in enumerate(KNOWN_TYPES)}
    keys = [(a.year, type_index.get(a.type, -1), a.score is not None) for a in catalogue]  # -1: unknown
    uniq = sorted(set(keys), key=lambda k: (k[0] is None, k[0] or 0, k[1], k[2]))
    index = {k: i for i, k in enumerate(uniq)}
    code = np.array([index[k] for k in keys], dtype=np.int64)
    years = np.array([np.nan if k[0] is None else k[0] for k in uniq], dtype=np.float64)
    types = np.array([k[1] for k in uniq], dtype=np.int64)
    score_known = np.array([k[2] for k in uniq], dtype=bool)

    year_known = ~np.isnan(years)
    y_both = year_known[:, None] & year_known[None, :]
    latest = np.fmax(years[:, None], years[None, :])
    frac = np.clip((latest - cfg.year_old) / (cfg.year_recent - cfg.year_old), 0.0, 1.0)
    tol = cfg.year_tolerance_old + frac * (cfg.year_tolerance_recent - cfg.year_tolerance_old)
    with np.errstate(invalid="ignore"):
        year_sim = 1.0 - np.minimum(np.abs(years[:, None] - years[None, :]) / tol, 1.0)
    year_sim = np.where(y_both, year_sim, 0.0)

    compat = np.array([[cfg.type_compatibility[(a, b)] for b in KNOWN_TYPES] for a in KNOWN_TYPES])
    t_known = types >= 0
    t_both = t_known[:, None] & t_known[None, :]
    t_idx = np.maximum(types, 0)
    type_sim = np.where(t_both, compat[t_idx[:, None], t_idx[None, :]], 0.0)
    s_both = score_known[:, None] & score_known[None, :]

    w_s, w_y, w_t = (w / cfg.tag_weight for w in (cfg.score_weight, cfg.year_weight, cfg.type_weight))
    pair_table = w_y * year_sim + w_t * type_sim + w_s
    den = 1.0 + w_s * s_both + w_y * y_both + w_t * t_both
    return code, pair_table.astype(np.float32), (1.0 / den).astype(np.float32)


def top_k_arrays(
    features: TeacherFeatures,
    k: int = 100,
    rows: Sequence[int] | np.ndarray | None = None,
    block_size: int = 1024,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query rows, neighbour rows [m, k], float32 scores [m, k]) of the V2 top-k, self excluded.

    Works on blocks of `block_size` rows × the whole catalogue, so memory is O(block_size · n),
    never O(n²). `progress` is called with the number of rows finished after each block.
    """
    n = len(features)
    query = np.arange(n, dtype=np.int64) if rows is None else np.unique(np.asarray(rows, dtype=np.int64))
    if query.size and (query[0] < 0 or query[-1] >= n):
        raise IndexError("rows out of range")
    k = max(0, min(k, n - 1))
    # Columns are permuted (`col_order`): exclude each query's own column, break ties by catalogue row.
    cols, sc = top_k_blockwise(
        features.block_scores_cols,
        query,
        k,
        exclude=features.col_position[query],
        rank=features.col_order,
        block_size=block_size,
        progress=progress,
    )
    return query, features.col_order[cols], sc.astype(np.float32, copy=False)


def top_k_neighbours(
    features: TeacherFeatures,
    k: int = 100,
    rows: Sequence[int] | np.ndarray | None = None,
    block_size: int = 1024,
    progress: Callable[[int], None] | None = None,
) -> NeighbourLists:
    """All-pairs V2 top-k neighbour lists (of every anime, or only of `rows` for a delta update)."""
    query, nb, sc = top_k_arrays(features, k=k, rows=rows, block_size=block_size, progress=progress)
    return NeighbourLists(
        ids=features.ids[query], neighbour_ids=features.ids[nb], scores=sc.astype(np.float16)
    )
