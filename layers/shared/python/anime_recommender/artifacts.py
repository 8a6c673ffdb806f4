"""The artifact bundle the Lambda functions serve from: layout, manifest, verification, tiered loading.

Layout of a bundle directory (`BuildPaths.artifacts_dir`; `/opt/anime-artifacts` in Lambda)::

    manifest.json            versions, sha256 + size of every file, dims, index params (incl. ef), ...
    catalogue.jsonl.gz       the catalogue (metadata for responses, filters)
    content_hashes.npz       id → `Anime.content_hash` of every record (delta updates diff against it)
    release_dates.json       optional: the bangumi-data years/seasons the build's ingest filled in
                             (a delta validates new catalogues with exactly these; CC BY 4.0)
    neighbours_v2.npz        V2 teacher top-K lists: the last fallback tier
    model/                   model.onnx (int8, outputs v4 and v3), tokenizer.json, encoder.json
    index_v4/ index_v3/      index directories: V4 hnswlib (`VectorIndex`), V3 flat int8 (`FlatIndex`);
                             the manifest's `indexes[space].kind` says which (older bundles: hnswlib)
    index_story/             optional: the story index (`STORY`), a flat int8 index of the model's v3
                             vectors of `text.story_passage` (the synopsis alone), one row per anime with
                             a synopsis; absent (no manifest entry) when the catalogue has no synopses
    lexical/                 the BM25 index of the catalogue (`search.lexical.LexicalIndex`) for /search
    catalogue_tables.marshal optional: the catalogue's title and franchise tables (`catalogue_tables`),
                             read instead of built at cold start when valid for this catalogue and code

`load_bundle` verifies the sha256 of every file it loads before using it and degrades per tier:
V4 index (or the model's v4 output) broken → "v3"; model or V3 index broken too → "v2" (neighbour
lists only, no encoder); catalogue or neighbour lists broken → `ArtifactIntegrityError`. The lexical
index is a component of its own: broken or absent, it is reported in `failures` and search loses its
lexical side, the tier stays what the vectors allow. A corrupt tables file is reported in `failures`
too, and the tables are built from the catalogue (a stale one, of other code, is silently rebuilt).
The story index, where the manifest lists one, is loaded beside the tier's index (`ServingBundle.story`);
broken, it is reported in `failures` (component "index_story") and never changes the tier. Hashing runs
in a thread pool (hashlib releases the GIL) while the main thread parses what is already verified, so
cold start pays roughly max(hash, load) rather than their sum.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Collection, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from anime_recommender.catalogue import Catalogue
from anime_recommender.catalogue_tables import (
    TABLES_FILE,
    CatalogueTables,
    StaleTablesError,
    load_tables,
    read_tables,
    save_tables,
)
from anime_recommender.encoder import CONFIG_FILE, MODEL_FILE, TOKENIZER_FILE, EncoderConfig, OnnxEncoder
from anime_recommender.index import FLAT_KIND, HNSW_KIND, IndexKind, SearchIndex, load_index
from anime_recommender.neighbours import NeighbourLists
from anime_recommender.prefetch import BundlePrefetch, FileRead, sha256_file, take
from anime_recommender.release_dates import ReleaseDates, save_release_dates
from anime_recommender.search.lexical import LexicalIndex, LexicalIndexError, build_lexical_index
from anime_recommender.timing import timed

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
CATALOGUE = "catalogue.jsonl.gz"
NEIGHBOURS = "neighbours_v2.npz"
CONTENT_HASHES = "content_hashes.npz"
RELEASE_DATES = "release_dates.json"
MODEL_DIR = "model"
MODEL_FILES = (f"{MODEL_DIR}/{MODEL_FILE}", f"{MODEL_DIR}/{TOKENIZER_FILE}", f"{MODEL_DIR}/{CONFIG_FILE}")
SPACES: tuple[str, ...] = ("v4", "v3")  # best first; also the encoder's output names
LEXICAL_DIR = "lexical"
# The kind of index each space is built as: V3 (the fallback tier, and V4's secondary score) is a flat
# int8 matrix searched exactly, a quarter of an hnswlib file's bytes; V4 stays an hnswlib graph.
SPACE_KINDS: dict[str, IndexKind] = {"v4": HNSW_KIND, "v3": FLAT_KIND}
# The story index: not a tier and not a model output of its own. Its rows are the "v3" output of each
# anime's `story_passage`, compared only with query vectors (free-text search, story similarity).
STORY = "story"
STORY_OUTPUT = "v3"
STORY_KIND: IndexKind = FLAT_KIND

Tier = Literal["v4", "v3", "v2"]


def index_dir(space: str) -> str:
    """Relative folder of a space's index, e.g. 'index_v4'."""
    return f"index_{space}"


def index_output(space: str) -> str:
    """The model output whose vectors an index holds: the space itself, "v3" for the story index."""
    return STORY_OUTPUT if space == STORY else space


class ArtifactIntegrityError(RuntimeError):
    """Nothing servable: the manifest, catalogue or neighbour lists are missing or corrupt."""

    def __init__(self, message: str, failures: list[ArtifactFailure] | None = None) -> None:
        super().__init__(message)
        self.failures = failures or []


class FileEntry(BaseModel):
    """Checksum and size of one bundle file."""

    model_config = ConfigDict(frozen=True)

    sha256: str
    bytes: int


class IndexInfo(BaseModel):
    """One space's index: its kind and, for hnswlib, its parameters (`ef` lives here because hnswlib
    does not save it; a flat index has none and records 0)."""

    model_config = ConfigDict(frozen=True)

    dim: int
    space: Literal["ip"] = "ip"
    kind: IndexKind = HNSW_KIND  # manifests before flat indexes name no kind: hnswlib
    M: int = 0
    ef_construction: int = 0
    ef: int = 0
    count: int
    recall_at_10: float | None = None


def index_info(index: SearchIndex, recall_at_10: float | None = None) -> IndexInfo:
    """The manifest entry of an index."""
    params = index.params
    return IndexInfo(
        dim=index.dim,
        kind=index.kind,
        M=params.M if params else 0,
        ef_construction=params.ef_construction if params else 0,
        ef=params.ef if params else 0,
        count=len(index),
        recall_at_10=recall_at_10,
    )


class Manifest(BaseModel):
    """What a bundle contains and how to check it (written last, read first)."""

    schema_version: int = SCHEMA_VERSION
    data_version: str
    model_version: str
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    files: dict[str, FileEntry]
    dims: dict[str, int]
    indexes: dict[str, IndexInfo]
    quantization: dict[str, Any] = Field(default_factory=dict)
    counts: dict[str, int] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        """Parse `directory/manifest.json`."""
        return cls.model_validate_json((directory / MANIFEST).read_bytes())


@dataclass(frozen=True)
class ArtifactFailure:
    """One problem found while verifying or loading (for /health and logs)."""

    path: str
    reason: str
    component: str


# ---------------------------------------------------------------------------------------------
# hashing, versions, writing
# ---------------------------------------------------------------------------------------------


def data_version(content_hashes: Mapping[int, str]) -> str:
    """Stable version of a catalogue: sha256 over sorted `id:content_hash` lines, 16 hex digits."""
    text = "".join([f"{anime_id}:{content_hashes[anime_id]}\n" for anime_id in sorted(content_hashes)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_content_hashes(path: Path, hashes: Mapping[int, str]) -> None:
    """Write id → content hash as an uncompressed .npz (int64 `ids`, the 16 hex digits as uint64 `hashes`)."""
    ids = np.fromiter(sorted(hashes), dtype=np.int64, count=len(hashes))
    hex_digits = "".join([hashes[i] for i in ids.tolist()])
    if len(hex_digits) != 16 * len(ids):
        raise ValueError("content hashes must be 16 hex digits each")
    values = np.frombuffer(bytes.fromhex(hex_digits), dtype=">u8").astype(np.uint64)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        np.savez(fh, ids=ids, hashes=values)


def load_content_hashes(path: Path) -> dict[int, str]:
    """Read what `save_content_hashes` wrote; ValueError naming the file when it is malformed."""
    try:
        with np.load(path, allow_pickle=False) as data:
            ids, values = data["ids"], data["hashes"]
    except (KeyError, ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a valid content-hash file ({exc})") from exc
    if ids.ndim != 1 or ids.shape != values.shape or values.dtype != np.uint64:
        raise ValueError(f"{path}: ids {ids.shape} and uint64 hashes {values.shape} do not match")
    hex_digits = values.astype(">u8").tobytes().hex()
    return dict(
        zip(ids.tolist(), [hex_digits[i : i + 16] for i in range(0, len(hex_digits), 16)], strict=True)
    )


def model_version(model_dir: Path) -> str:
    """Version of a model directory: sha256 over its model, tokenizer and config, 16 hex digits."""
    digest = hashlib.sha256()
    for name in (MODEL_FILE, TOKENIZER_FILE, CONFIG_FILE):
        digest.update(name.encode() + b"\0" + sha256_file(model_dir / name).encode() + b"\n")
    return digest.hexdigest()[:16]


def _bundle_files(directory: Path) -> list[str]:
    return sorted(
        p.relative_to(directory).as_posix()
        for p in directory.rglob("*")
        if p.is_file() and p.name != MANIFEST
    )


def write_manifest(
    directory: Path,
    *,
    data_version: str,
    model_version: str,
    dims: Mapping[str, int],
    indexes: Mapping[str, IndexInfo],
    quantization: Mapping[str, Any] | None = None,
    counts: Mapping[str, int] | None = None,
    extra: Mapping[str, Any] | None = None,
    known: Mapping[str, FileEntry] | None = None,
) -> Manifest:
    """Hash every file under `directory` and write `manifest.json` atomically (tmp + rename).

    `known`: entries of files the caller hard-linked from a verified bundle (same inode, so same
    bytes); they are taken as they are instead of being hashed again. Every other file is hashed.
    """
    files = _bundle_files(directory)
    known = known or {}
    todo = [rel for rel in files if rel not in known]
    with ThreadPoolExecutor(max_workers=min(4, max(1, len(todo)))) as pool:
        digests = dict(zip(todo, pool.map(lambda rel: sha256_file(directory / rel), todo), strict=True))
    entries = {
        rel: known[rel]
        if rel in known
        else FileEntry(sha256=digests[rel], bytes=(directory / rel).stat().st_size)
        for rel in files
    }
    manifest = Manifest(
        data_version=data_version,
        model_version=model_version,
        files=entries,
        dims=dict(dims),
        indexes=dict(indexes),
        quantization=dict(quantization or {}),
        counts=dict(counts or {}),
        extra=dict(extra or {}),
    )
    tmp = directory / f".{MANIFEST}.tmp"
    tmp.write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, directory / MANIFEST)
    return manifest


def write_bundle(
    directory: Path,
    *,
    catalogue: Catalogue,
    neighbours: NeighbourLists,
    model_dir: Path,
    indexes: Mapping[str, SearchIndex],
    recall_at_10: Mapping[str, float] | None = None,
    extra: Mapping[str, Any] | None = None,
    release_dates: ReleaseDates | None = None,
) -> Manifest:
    """Write a complete bundle into an empty (or replaced) `directory` and its manifest.

    The directory is rebuilt from scratch so no stale file from an older bundle survives.
    `release_dates`: the enrichment the catalogue was ingested with (written as `release_dates.json`,
    so delta updates enrich new catalogues identically); None writes no such file.
    `indexes` holds one index per model output ("v4", "v3") and optionally the story index (`STORY`,
    of the "v3" output's dim), written as `index_<name>/`.
    The catalogue's lexical index (/search's BM25 side) is built and written as `lexical/`, its
    lookup tables as `catalogue_tables.marshal`.
    """
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    catalogue.save(directory / CATALOGUE)
    hashes = catalogue.content_hashes()
    save_content_hashes(directory / CONTENT_HASHES, hashes)
    save_tables(directory / TABLES_FILE, CatalogueTables.build(catalogue), data_version(hashes))
    neighbours.save(directory / NEIGHBOURS)
    counts = {"anime": len(catalogue), "neighbours": len(neighbours), "neighbours_k": neighbours.k}
    if release_dates is not None:
        save_release_dates(directory / RELEASE_DATES, release_dates)
        counts["release_dates"] = len(release_dates)
    write_lexical(directory, catalogue)
    (directory / MODEL_DIR).mkdir()
    for name in (MODEL_FILE, TOKENIZER_FILE, CONFIG_FILE):
        shutil.copyfile(model_dir / name, directory / MODEL_DIR / name)
    config = EncoderConfig.load(model_dir / CONFIG_FILE)
    infos: dict[str, IndexInfo] = {}
    for space, index in indexes.items():
        output = index_output(space)
        if config.outputs.get(output) != index.dim:
            raise ValueError(
                f"index {space} has dim {index.dim}, model output {output} is {config.outputs.get(output)}"
            )
        index.save(directory / index_dir(space))
        infos[space] = index_info(index, (recall_at_10 or {}).get(space))
    return write_manifest(
        directory,
        data_version=data_version(hashes),
        model_version=model_version(model_dir),
        dims=config.outputs,
        indexes=infos,
        quantization=config.quantization,
        counts=counts,
        extra=extra,
    )


def write_lexical(directory: Path, catalogue: Catalogue, lexical: LexicalIndex | None = None) -> list[Path]:
    """Save the catalogue's lexical index (built here when None) as `directory/lexical/`."""
    index = lexical if lexical is not None else build_lexical_index(list(catalogue))
    if not np.array_equal(index.ids, np.asarray(catalogue.ids, dtype=np.int64)):
        raise ValueError("lexical index rows do not match the catalogue")
    return index.save(directory / LEXICAL_DIR)


# ---------------------------------------------------------------------------------------------
# verification
# ---------------------------------------------------------------------------------------------


def _matching_read(pending: Future[FileRead] | None, entry: FileEntry | None) -> FileRead | None:
    """The prefetched read when it is done and matches its manifest entry, else None."""
    if pending is None or entry is None or not pending.done() or pending.exception() is not None:
        return None
    read = pending.result()
    return read if (read.size, read.sha256) == (entry.bytes, entry.sha256) else None


def _check_prefetched(
    directory: Path, rel: str, entry: FileEntry | None, pending: Future[FileRead]
) -> tuple[str | None, FileRead | None]:
    """`_check_file` from a prefetched read: (None, the read) when it matches the entry; otherwise the
    file is checked again from disk (same reasons as ever) and the read is not used."""
    wait([pending])
    read = _matching_read(pending, entry)
    return (None, read) if read is not None else (_check_file(directory, rel, entry), None)


def _check_file(directory: Path, rel: str, entry: FileEntry | None, *, hashed: bool = True) -> str | None:
    """None when the file matches its manifest entry, else why not (cheap checks first; the sha256
    only when `hashed`)."""
    if entry is None:
        return "not listed in the manifest"
    path = directory / rel
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if size != entry.bytes:
        return f"size {size} != {entry.bytes} in manifest (truncated or replaced)"
    if hashed and sha256_file(path) != entry.sha256:
        return "sha256 mismatch (corrupt)"
    return None


def _component_files(manifest: Manifest) -> dict[str, list[str]]:
    parts: dict[str, list[str]] = {
        "catalogue": [CATALOGUE],
        "neighbours": [NEIGHBOURS],
        "model": list(MODEL_FILES),
        # Bundles built before the lexical index list none of its files: report the folder missing.
        "lexical": sorted(r for r in manifest.files if r.startswith(LEXICAL_DIR + "/"))
        or [f"{LEXICAL_DIR}/lexical.json"],
    }
    if TABLES_FILE in manifest.files:  # optional: bundles written before it have none
        parts["tables"] = [TABLES_FILE]
    for space in manifest.indexes:
        prefix = index_dir(space) + "/"
        parts[index_dir(space)] = sorted(rel for rel in manifest.files if rel.startswith(prefix))
        if not parts[index_dir(space)]:
            parts[index_dir(space)] = [prefix + "index.bin"]  # listed space with no files: report it
    return parts


def verify(
    directory: Path, only: Iterable[str] | None = None, *, size_only: Collection[str] = ()
) -> list[ArtifactFailure]:
    """Check every file of the manifest (size, then sha256); returns the failures (empty = ok).

    `only`: check just these files (relative paths; one the manifest does not list is a failure).
    `size_only`: files whose bytes are known to be the ones the manifest was computed from (e.g. hard
    links of them): their size is checked, their sha256 is not computed again.
    """
    manifest = _read_manifest(directory)
    component_of = {rel: comp for comp, rels in _component_files(manifest).items() for rel in rels}
    wanted = sorted(set(manifest.files) | set(component_of) if only is None else set(only))
    with ThreadPoolExecutor(max_workers=min(4, max(1, len(wanted)))) as pool:
        reasons = list(
            pool.map(
                lambda rel: _check_file(directory, rel, manifest.files.get(rel), hashed=rel not in size_only),
                wanted,
            )
        )
    return [
        ArtifactFailure(rel, reason, component_of.get(rel, "other"))
        for rel, reason in zip(wanted, reasons, strict=True)
        if reason is not None
    ]


def _read_manifest(directory: Path) -> Manifest:
    try:
        manifest = Manifest.read(directory)
    except (OSError, ValueError) as exc:
        failure = ArtifactFailure(MANIFEST, f"unreadable: {exc}", "manifest")
        raise ArtifactIntegrityError(f"{directory}: no valid manifest ({exc})", [failure]) from exc
    if manifest.schema_version != SCHEMA_VERSION:
        failure = ArtifactFailure(
            MANIFEST, f"schema {manifest.schema_version} != {SCHEMA_VERSION}", "manifest"
        )
        raise ArtifactIntegrityError(f"{directory}: unsupported manifest schema", [failure])
    return manifest


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------


@dataclass
class ServingBundle:
    """Everything a function serves from, plus which tier is active and why."""

    root: Path
    manifest: Manifest
    catalogue: Catalogue
    neighbours: NeighbourLists
    encoder: OnnxEncoder | None
    indexes: dict[str, SearchIndex]
    tier: Tier
    failures: list[ArtifactFailure] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    lexical: LexicalIndex | None = None  # None when its files failed (search then has no BM25 side)
    tables: CatalogueTables | None = None  # None: no valid saved tables (consumers build them)
    # The story index (v3 vectors of synopses, searched with `encoder`'s v3 query vectors): None when
    # the bundle has none, when it failed (then in `failures`) or in tier v2 (no encoder).
    story: SearchIndex | None = None

    @property
    def index(self) -> SearchIndex | None:
        """The active tier's index (None in tier v2)."""
        return self.indexes.get(self.tier)

    @property
    def data_version(self) -> str:
        """The manifest's catalogue version (part of cache keys)."""
        return self.manifest.data_version

    @property
    def model_version(self) -> str:
        """The manifest's model version (part of cache keys)."""
        return self.manifest.model_version


class _Verifier:
    """Hashes files in background threads; `check(component)` waits for that component's files.

    Files a `BundlePrefetch` of the same folder already read are checked from its digests.
    """

    def __init__(self, directory: Path, manifest: Manifest, prefetched: BundlePrefetch | None = None) -> None:
        self._directory = directory
        self._manifest = manifest
        self._prefetched = prefetched
        self._components: dict[str, list[str]] = {}
        self._futures: dict[str, Future[tuple[str | None, FileRead | None]]] = {}
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="verify")

    def submit(self, component: str, rels: list[str]) -> None:
        """Start hashing a component's files (in submission order: small, critical parts first)."""
        self._components[component] = rels
        for rel in rels:
            entry = self._manifest.files.get(rel)
            pending = self._prefetched.read(rel) if self._prefetched is not None else None
            matched = _matching_read(pending, entry)
            if matched is not None:
                # Decided here: a pool thread would first have to win the GIL from the catalogue parse
                # (~5 ms a turn; ~30 files took ~0.3 s to be passed through).
                decided: Future[tuple[str | None, FileRead | None]] = Future()
                decided.set_result((None, matched))
                self._futures[rel] = decided
            elif pending is not None:
                checked = self._pool.submit(_check_prefetched, self._directory, rel, entry, pending)
                self._futures[rel] = checked
            else:
                self._futures[rel] = self._pool.submit(_checked_read, self._directory, rel, entry)

    def check(self, component: str) -> list[ArtifactFailure]:
        """Wait for a submitted component; its failures (empty = verified)."""
        failures = []
        for rel in self._components[component]:
            reason, _ = self._futures[rel].result()
            if reason is not None:
                failures.append(ArtifactFailure(rel, reason, component))
        return failures

    def inflated(self, rel: str) -> bytes | None:
        """The verified file's content as the prefetch inflated it (`prefetch.INFLATED_FILES`), when it
        did; call after `check` passed."""
        _, read = self._futures[rel].result()
        return None if read is None else read.inflated

    def close(self) -> None:
        """Stop hashing what nobody waits for any more."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def _checked_read(directory: Path, rel: str, entry: FileEntry | None) -> tuple[str | None, FileRead | None]:
    return _check_file(directory, rel, entry), None


def load_bundle(directory: Path, *, threads: int = 1, all_tiers: bool = False) -> ServingBundle:
    """Verify and load a bundle, degrading v4 → v3 → v2; raise when nothing can be served.

    Only what the chosen tier needs is hashed and loaded (the V3 index only when V4 is unusable),
    unless `all_tiers` is set (the delta update needs both indexes). A story index the manifest lists
    is hashed after the tier's index and read on a loader thread like it; it is served in tiers v4 and
    v3 only (it needs the encoder's query vectors), and a broken one is just a reported failure.

    Args:
        directory: the bundle directory.
        threads: onnxruntime intra-op threads (Lambda vCPUs are not os.cpu_count()).
        all_tiers: also verify and load the fallback index when V4 is fine.
    """
    seconds: dict[str, float] = {}
    total = timed()
    manifest = _read_manifest(directory)
    components = _component_files(manifest)
    spaces = [s for s in SPACES if s in manifest.indexes]
    wanted = _eager_components(manifest, components, spaces, all_tiers)
    verifier = _Verifier(directory, manifest, take(directory))
    for comp in wanted:
        verifier.submit(comp, components[comp])
    failures: list[ArtifactFailure] = []
    # The neighbour lists, the ONNX session and the indexes are made in background threads, each only
    # after its own files verified: np.load's inflate, hnswlib's load and onnxruntime's session build
    # release the GIL, so they run beside the catalogue parse instead of after it (~0.15 s of cold
    # start where a second core is free). Every result is awaited before this function returns, so
    # failures and tier are decided as before.
    loader = ThreadPoolExecutor(max_workers=6, thread_name_prefix="load")
    pending_lists = loader.submit(_lists_if_verified, directory, verifier)
    pending_encoder = loader.submit(_encoder_if_verified, directory, verifier, threads)
    pending_tables = loader.submit(_tables_if_verified, directory, verifier) if "tables" in wanted else None
    pending_indexes = {
        space: loader.submit(_read_index, directory, manifest, space, verifier)
        for space in spaces
        if index_dir(space) in wanted
    }
    pending_story = (
        loader.submit(_read_index, directory, manifest, STORY, verifier)
        if index_dir(STORY) in wanted
        else None
    )

    try:
        with timed(seconds, "catalogue_neighbours"):
            critical = verifier.check("catalogue") + verifier.check("neighbours")
            if critical:
                raise ArtifactIntegrityError(f"{directory}: catalogue or neighbour lists unusable", critical)
            try:
                catalogue, neighbours = _catalogue_and_lists(directory, verifier, pending_lists)
            except (OSError, ValueError, KeyError, EOFError) as exc:
                failure = ArtifactFailure(
                    CATALOGUE + " / " + NEIGHBOURS, f"failed to load: {exc}", "catalogue"
                )
                raise ArtifactIntegrityError(f"{directory}: {exc}", [failure]) from exc

        with timed(seconds, "tables"):
            tables = (
                None
                if pending_tables is None
                else _load_tables(pending_tables, manifest, catalogue, failures)
            )

        with timed(seconds, "lexical"):
            lexical = _load_lexical(directory, catalogue, verifier, failures)

        with timed(seconds, "model"):
            encoder, problems = pending_encoder.result()
            failures.extend(problems)

        indexes: dict[str, SearchIndex] = {}
        for space in spaces:
            if encoder is None:
                break
            if indexes and not all_tiers:
                break
            comp = index_dir(space)
            with timed(seconds, comp):
                if space not in pending_indexes:
                    verifier.submit(comp, components[comp])
                    pending_indexes[space] = loader.submit(_read_index, directory, manifest, space, verifier)
                index = _load_index(manifest, space, encoder, pending_indexes[space], failures)
                if index is not None:
                    indexes[space] = index

        story = None
        if pending_story is not None and encoder is not None and indexes:  # tiers v4 and v3 only
            with timed(seconds, index_dir(STORY)):
                story = _load_index(manifest, STORY, encoder, pending_story, failures)
    finally:
        loader.shutdown(wait=False, cancel_futures=True)
        verifier.close()

    tier = _tier(spaces, indexes)
    if tier == "v2":
        encoder = None  # without an index the encoder serves nothing; keep the tier contract simple
    seconds["total"] = total.seconds
    return ServingBundle(
        root=directory,
        manifest=manifest,
        catalogue=catalogue,
        neighbours=neighbours,
        encoder=encoder,
        indexes=indexes,
        tier=tier,
        failures=failures,
        timings_ms={name: round(s * 1000, 1) for name, s in seconds.items()},
        lexical=lexical,
        tables=tables,
        story=story,
    )


def _tier(spaces: list[str], indexes: Mapping[str, SearchIndex]) -> Tier:
    """The best tier whose index loaded ("v2": none did)."""
    for space in spaces:
        if space in indexes:
            return "v4" if space == "v4" else "v3"
    return "v2"


def _eager_components(
    manifest: Manifest, components: Mapping[str, list[str]], spaces: list[str], all_tiers: bool
) -> list[str]:
    """The components `load_bundle` hashes from the start, in order (small, critical parts first)."""
    tables_part = ["tables"] if "tables" in components else []  # older bundles have none
    wanted = ["catalogue", "neighbours", *tables_part, "lexical", "model"] + [index_dir(s) for s in spaces]
    # The fallback index is only hashed eagerly when it will certainly be needed.
    if not all_tiers and len(spaces) > 1:
        wanted = wanted[:-1]
    if STORY in manifest.indexes:
        wanted.append(index_dir(STORY))  # last: what decides the tier is hashed first
    return wanted


TablesRead = bytes | list[ArtifactFailure]


def _tables_if_verified(directory: Path, verifier: _Verifier) -> TablesRead:
    """The tables file inflated once it verified, else why not (runs in a loader thread)."""
    problems = verifier.check("tables")
    if problems:
        return problems
    try:
        return read_tables(directory / TABLES_FILE)
    except (OSError, ValueError) as exc:
        return [ArtifactFailure(TABLES_FILE, f"failed to load: {exc}", "tables")]


def _load_tables(
    pending: Future[TablesRead], manifest: Manifest, catalogue: Catalogue, failures: list[ArtifactFailure]
) -> CatalogueTables | None:
    """The bundle's saved tables when verified and valid for its catalogue and this code, else None."""
    raw = pending.result()
    if isinstance(raw, list):
        failures.extend(raw)
        return None
    try:
        return load_tables(raw, catalogue, manifest.data_version)
    except StaleTablesError:
        return None  # written by other code (a layer redeployed over this bundle): not a fault
    except ValueError as exc:
        failures.append(ArtifactFailure(TABLES_FILE, f"failed to load: {exc}", "tables"))
        return None


def _load_lexical(
    directory: Path, catalogue: Catalogue, verifier: _Verifier, failures: list[ArtifactFailure]
) -> LexicalIndex | None:
    """The verified lexical index of `catalogue`, or None with the reason added to `failures`."""
    problems = verifier.check("lexical")
    if problems:
        failures.extend(problems)
        return None
    try:
        index = LexicalIndex.load(directory / LEXICAL_DIR)
    # numpy/json raise assorted types on a verified but unreadable index: it degrades, never refuses.
    except Exception as exc:
        reason = str(exc) if isinstance(exc, LexicalIndexError) else f"{type(exc).__name__}: {exc}"
        failures.append(ArtifactFailure(LEXICAL_DIR, f"failed to load: {reason}", "lexical"))
        return None
    if not np.array_equal(index.ids, np.asarray(catalogue.ids, dtype=np.int64)):
        failures.append(ArtifactFailure(LEXICAL_DIR, "rows do not match the catalogue", "lexical"))
        return None
    return index


def _encoder_if_verified(
    directory: Path, verifier: _Verifier, threads: int
) -> tuple[OnnxEncoder | None, list[ArtifactFailure]]:
    """The encoder once its files verified, or None and why (runs in a loader thread)."""
    problems = verifier.check("model")
    if problems:
        return None, problems
    try:
        return OnnxEncoder.load(directory / MODEL_DIR, threads=threads), []
    # onnxruntime/tokenizers raise assorted types; any failure of a verified model means "no model tier".
    except Exception as exc:
        return None, [ArtifactFailure(MODEL_DIR, f"failed to load: {type(exc).__name__}: {exc}", "model")]


def _catalogue_and_lists(
    directory: Path, verifier: _Verifier, pending_lists: Future[NeighbourLists | None]
) -> tuple[Catalogue, NeighbourLists]:
    """The verified catalogue (parsed from the prefetch's inflated bytes when it has them) and neighbour
    lists; call once both verified."""
    path = directory / CATALOGUE
    inflated = verifier.inflated(CATALOGUE)
    catalogue = Catalogue.load(path) if inflated is None else Catalogue.parse(inflated, str(path))
    lists = pending_lists.result()
    assert lists is not None  # its files verified (the caller checked)
    return catalogue, lists


def _lists_if_verified(directory: Path, verifier: _Verifier) -> NeighbourLists | None:
    """The neighbour lists once their file verified; None when it did not (the caller reports why)."""
    if verifier.check("neighbours"):
        return None
    return NeighbourLists.load(directory / NEIGHBOURS)


IndexRead = tuple[SearchIndex | None, list[ArtifactFailure]]


def _read_index(directory: Path, manifest: Manifest, space: str, verifier: _Verifier) -> IndexRead:
    """A space's index once its files verified, or None and why (runs in a loader thread)."""
    comp = index_dir(space)
    info = manifest.indexes[space]
    problems = verifier.check(comp)
    if problems:
        return None, problems
    try:
        index = load_index(directory / comp, ef=info.ef, kind=info.kind)
    # hnswlib raises RuntimeError, numpy ValueError/OSError: a verified but unloadable index degrades.
    except Exception as exc:
        return None, [ArtifactFailure(comp, f"failed to load: {type(exc).__name__}: {exc}", comp)]
    if index.dim != info.dim or len(index) != info.count:
        return None, [ArtifactFailure(comp, f"dim/count {index.dim}/{len(index)} != manifest", comp)]
    return index, []


def _load_index(
    manifest: Manifest,
    space: str,
    encoder: OnnxEncoder,
    pending: Future[IndexRead],
    failures: list[ArtifactFailure],
) -> SearchIndex | None:
    comp = index_dir(space)
    info = manifest.indexes[space]
    output = index_output(space)
    if encoder.dims.get(output) != info.dim:
        # The index is unusable whatever its files hold, so only this is reported (as before).
        failures.append(
            ArtifactFailure(f"{MODEL_DIR}/{MODEL_FILE}", f"no {output} output of dim {info.dim}", comp)
        )
        return None
    index, problems = pending.result()
    failures.extend(problems)
    return index


def bundle_sizes(directory: Path, files: Iterable[str] | None = None) -> dict[str, int]:
    """Bytes per top-level part of a bundle ('model', 'index_v4', 'catalogue.jsonl.gz', ...)."""
    sizes: dict[str, int] = {}
    rels = files if files is not None else [*_bundle_files(directory), MANIFEST]
    for rel in rels:
        path = directory / rel
        if path.is_file():
            part = rel.split("/", 1)[0]
            sizes[part] = sizes.get(part, 0) + path.stat().st_size
    return sizes
