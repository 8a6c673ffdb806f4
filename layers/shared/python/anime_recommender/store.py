"""Versioned artifact publication: immutable version prefixes plus one small pointer object.

Layout (S3 bucket; a local folder has the same shape without the upload ids)::

    <prefix>/<version>/<upload id>/manifest.json, catalogue.jsonl.gz, model/..., index_v4/..., ...
    current.json   {"version", "prefix", "manifest_sha256", "published_at", "data_version", ...}

`version` is `<data_version>-<model_version>`: the same catalogue with the same model is the same
version (re-runs publish nothing), and a redeployed model never collides with an older version.
Each upload of a version has a prefix of its own, so two runs of a double delivery never write the
same object; the pointer names the one upload readers serve.

Every write goes through one seam (`ArtifactStore._write`, observed by `write_hook`): the
reliability suite kills a run at each write in turn there.

Publishing is upload → verify → flip. Every file is uploaded with its sha256 (S3 checks the body
against `ChecksumSHA256`; the hex digest also goes into the object's metadata), then each object is
checked (size and digest), then `manifest.json` goes last: an upload without a manifest is
incomplete and never pointed to. Only then is the pointer overwritten, with a conditional PUT
(`If-Match` the ETag read at the start, `If-None-Match: *` when there was none), so of two concurrent
runs exactly one flips and the other gets a precondition failure (`ConcurrentPublishError`; the
delta run then ends "superseded"). An S3 PUT is atomic: readers see the old pointer or the new one.
A crash before the flip leaves the old version serving; the orphan upload is harmless (a re-run with
the same catalogue adopts it, a lifecycle rule expires the rest). There is no lock, hence no lock a
dead run could leave behind.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import logging
import os
import shutil
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeGuard, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from anime_recommender.artifacts import MANIFEST, Manifest, sha256_file, verify

log = logging.getLogger(__name__)

POINTER_SCHEMA = 1
T = TypeVar("T")
WriteKind = Literal["put", "manifest", "pointer", "copy", "delete", "rename"]


@dataclass(frozen=True)
class Write:
    """One write to the store, as the write seam announces it before it happens."""

    kind: WriteKind
    target: str


#: Called with each write before it happens (fault injection: raise, or kill the process, there).
WriteHook = Callable[[Write], None]


class ArtifactStoreError(RuntimeError):
    """The store could not be read or written (network, permissions, missing or corrupt objects)."""


class ConcurrentPublishError(ArtifactStoreError):
    """The pointer changed since it was read: another publisher won; nothing was overwritten."""


class Pointer(BaseModel):
    """The pointer object: which version readers should serve."""

    model_config = ConfigDict(frozen=True)

    schema_version: int = POINTER_SCHEMA
    version: str
    prefix: str
    manifest_sha256: str
    published_at: datetime
    data_version: str
    model_version: str
    previous: str | None = None
    etag: str | None = Field(default=None, exclude=True)  # where it was read from; never written


@dataclass(frozen=True)
class VersionRef:
    """A complete, verified version in the store (what a pointer can name)."""

    version: str
    prefix: str
    manifest_sha256: str
    manifest: Manifest


def servable(pointer: Pointer | None, layer_model_version: str) -> TypeGuard[Pointer]:
    """Whether readers may serve the pointer's version: only one built with the deployed layer's model.

    A deploy that brought another model wins over versions published with the old one (the API keeps
    the layer's bundle, the delta update bases on it); a mismatch is logged.
    """
    if pointer is None:
        return False
    if pointer.model_version != layer_model_version:
        log.warning(
            "pointer %s has model %s, layer has %s: not served",
            pointer.version,
            pointer.model_version,
            layer_model_version,
        )
        return False
    return True


def version_id(manifest: Manifest) -> str:
    """The store's name of a bundle: `<data_version>-<model_version>`."""
    return f"{manifest.data_version}-{manifest.model_version}"


def _b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode("ascii")


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link `src` to `dst` (cheap for unchanged artifacts), copying where links cannot be made."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        # Another file system (e.g. /opt → /tmp in Lambda) or no hard links: copy.
        shutil.copyfile(src, dst)


def _reusable(rel: str, sha256: str, size: int, reuse: Sequence[Path]) -> Path | None:
    """A local file with the same path and manifest digest in an already verified bundle."""
    for root in reuse:
        try:
            entry = Manifest.read(root).files.get(rel)
        except (OSError, ValueError):
            continue
        path = root / rel
        if entry is not None and entry.sha256 == sha256 and entry.bytes == size and path.is_file():
            return path
    return None


class ArtifactStore(ABC):
    """Where versions are published and the pointer lives (S3 in AWS, a folder locally).

    Every write, of either store, goes through `_write`: the one seam where `write_hook` sees it first
    (the reliability suite crashes a run at each write in turn there).
    """

    write_hook: WriteHook | None = None

    def _write(self, kind: WriteKind, target: str, action: Callable[[], T]) -> T:
        """Do one write, announced to `write_hook` first."""
        if self.write_hook is not None:
            self.write_hook(Write(kind, target))
        return action()

    @abstractmethod
    def read_pointer(self) -> Pointer | None:
        """The current pointer, or None when nothing was ever published."""

    @abstractmethod
    def find_version(self, version: str) -> VersionRef | None:
        """A complete version (manifest present, every object verified), or None."""

    @abstractmethod
    def upload_version(self, bundle_dir: Path) -> VersionRef:
        """Publish a local bundle as an immutable version (reusing a complete one of the same name)."""

    @abstractmethod
    def write_pointer(self, pointer: Pointer, expected: Pointer | None) -> None:
        """Overwrite the pointer, only if it is still `expected` (None: only if there is none)."""

    @abstractmethod
    def fetch(self, pointer: Pointer, dest_root: Path, reuse: Sequence[Path] = ()) -> Path:
        """A local directory holding the pointer's version (downloaded if needed), its manifest the
        pointer's. Downloads are verified before they enter `dest_root`; whoever loads the files
        verifies them again (`load_bundle`, `load_delta_base`), so a file altered later is never trusted."""

    def flip_pointer(self, ref: VersionRef, expected: Pointer | None) -> Pointer:
        """Point readers at `ref` (conditional on `expected`); returns the new pointer."""
        pointer = Pointer(
            version=ref.version,
            prefix=ref.prefix,
            manifest_sha256=ref.manifest_sha256,
            published_at=datetime.now(UTC),
            data_version=ref.manifest.data_version,
            model_version=ref.manifest.model_version,
            previous=None if expected is None else expected.version,
        )
        self.write_pointer(pointer, expected)
        now = self.read_pointer()
        if now is None or now.version != ref.version or now.manifest_sha256 != ref.manifest_sha256:
            raise ArtifactStoreError(f"pointer read back as {now!r}, expected version {ref.version}")
        return now

    def publish(self, bundle_dir: Path, expected: Pointer | None) -> Pointer:
        """Upload, verify, then flip the pointer."""
        return self.flip_pointer(self.upload_version(bundle_dir), expected)


# ---------------------------------------------------------------------------------------------
# S3
# ---------------------------------------------------------------------------------------------


def s3_client(endpoint_url: str | None = None) -> Any:
    """A boto3 S3 client with short timeouts and bounded retries (an outage fails fast, not in 15 min)."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=3, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"})
    return boto3.client("s3", endpoint_url=endpoint_url, config=config)


class S3ArtifactStore(ArtifactStore):
    """Versions under `s3://bucket/<prefix>/<version>/`, the pointer at `s3://bucket/<pointer_key>`."""

    def __init__(
        self,
        bucket: str,
        *,
        pointer_key: str = "current.json",
        prefix: str = "versions",
        client: Any = None,
        endpoint_url: str | None = None,
        workers: int = 4,
    ) -> None:
        self.bucket = bucket
        self.pointer_key = pointer_key
        self.prefix = prefix.strip("/")
        self._client = client if client is not None else s3_client(endpoint_url)
        self._workers = workers

    def __repr__(self) -> str:
        return f"S3ArtifactStore(s3://{self.bucket}/{self.pointer_key}, prefix={self.prefix!r})"

    def _call(self, operation: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self._client, operation)(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise ConcurrentPublishError(f"s3://{self.bucket}/{kwargs.get('Key')}: {code}") from exc
            if code in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(f"s3://{self.bucket}/{kwargs.get('Key')}") from exc
            raise ArtifactStoreError(f"S3 {operation} s3://{self.bucket}/{kwargs.get('Key')}: {exc}") from exc
        except BotoCoreError as exc:
            raise ArtifactStoreError(f"S3 {operation} s3://{self.bucket}/{kwargs.get('Key')}: {exc}") from exc

    def _base(self, version: str) -> str:
        return f"{self.prefix}/{version}/"

    def _candidates(self, version: str) -> list[str]:
        """Prefixes that may hold `version`: each upload's own (`<version>/<upload id>/`), and the
        version's root (where versions were uploaded before uploads had ids)."""
        base = self._base(version)
        listed = self._call("list_objects_v2", Prefix=base, Delimiter="/")
        uploads = sorted(p["Prefix"] for p in listed.get("CommonPrefixes", []))
        return [base, *uploads]

    def read_pointer(self) -> Pointer | None:
        try:
            response = self._call("get_object", Key=self.pointer_key)
        except FileNotFoundError:
            return None
        body = response["Body"].read()
        try:
            pointer = Pointer.model_validate_json(body)
        except ValidationError as exc:
            raise ArtifactStoreError(
                f"s3://{self.bucket}/{self.pointer_key} is not a valid pointer: {exc}"
            ) from exc
        return pointer.model_copy(update={"etag": response.get("ETag")})

    def _remote_manifest(self, prefix: str) -> tuple[Manifest, str] | None:
        try:
            body = self._call("get_object", Key=prefix + MANIFEST)["Body"].read()
        except FileNotFoundError:
            return None
        try:
            return Manifest.model_validate_json(body), hashlib.sha256(body).hexdigest()
        except ValidationError as exc:
            raise ArtifactStoreError(f"{prefix}{MANIFEST} is corrupt: {exc}") from exc

    def _check_object(self, key: str, sha256: str, size: int) -> str | None:
        try:
            head = self._call("head_object", Key=key, ChecksumMode="ENABLED")
        except FileNotFoundError:
            return f"{key}: missing"
        if int(head["ContentLength"]) != size:
            return f"{key}: {head['ContentLength']} bytes, manifest says {size}"
        if head.get("Metadata", {}).get("sha256") != sha256:
            return f"{key}: sha256 metadata {head.get('Metadata', {}).get('sha256')} != manifest {sha256}"
        checksum = head.get("ChecksumSHA256")
        if checksum and "-" not in checksum and checksum != _b64(sha256):
            return f"{key}: S3 ChecksumSHA256 {checksum} != manifest"
        return None

    def _verify_remote(self, base: str, manifest: Manifest) -> list[str]:
        with ThreadPoolExecutor(max_workers=self._workers) as pool:
            found = pool.map(
                lambda item: self._check_object(base + item[0], item[1].sha256, item[1].bytes),
                sorted(manifest.files.items()),
            )
            return [p for p in found if p is not None]

    def find_version(self, version: str) -> VersionRef | None:
        for prefix in self._candidates(version):
            remote = self._remote_manifest(prefix)
            if remote is not None and not self._verify_remote(prefix, remote[0]):
                return VersionRef(version, prefix, remote[1], remote[0])
        return None

    def _put_file(self, key: str, path: Path, sha256: str, kind: WriteKind = "put", **condition: str) -> None:
        def put() -> None:
            with path.open("rb") as body:
                self._call(
                    "put_object",
                    Key=key,
                    Body=body,
                    ContentLength=path.stat().st_size,
                    ChecksumSHA256=_b64(sha256),
                    Metadata={"sha256": sha256},
                    **condition,
                )

        self._write(kind, key, put)

    def upload_version(self, bundle_dir: Path) -> VersionRef:
        manifest = Manifest.read(bundle_dir)
        version = version_id(manifest)
        existing = self.find_version(version)
        if existing is not None:
            return existing
        # Each upload has a prefix of its own under the version's: two runs publishing the same version
        # at once (a double delivery) never write the same object, so neither can overwrite the
        # other's files, and whichever flips the pointer names a complete upload of its own. (Their
        # bytes may differ: hnswlib's graph is not byte-for-byte reproducible.)
        base = f"{self._base(version)}{uuid.uuid4().hex[:12]}/"
        items = sorted(manifest.files.items())
        with ThreadPoolExecutor(max_workers=self._workers) as pool:
            list(
                pool.map(
                    lambda item: self._put_file(base + item[0], bundle_dir / item[0], item[1].sha256), items
                )
            )
        problems = self._verify_remote(base, manifest)
        if problems:
            raise ArtifactStoreError(f"upload of {version} did not verify: {'; '.join(problems[:5])}")
        manifest_sha = sha256_file(bundle_dir / MANIFEST)
        # The manifest goes last: its presence marks the upload complete.
        self._put_file(base + MANIFEST, bundle_dir / MANIFEST, manifest_sha, "manifest", IfNoneMatch="*")
        problem = self._check_object(base + MANIFEST, manifest_sha, (bundle_dir / MANIFEST).stat().st_size)
        if problem:
            raise ArtifactStoreError(f"upload of {version} did not verify: {problem}")
        return VersionRef(version, base, manifest_sha, manifest)

    def write_pointer(self, pointer: Pointer, expected: Pointer | None) -> None:
        condition = {"IfNoneMatch": "*"} if expected is None else {"IfMatch": expected.etag or "*"}
        self._write(
            "pointer",
            self.pointer_key,
            lambda: self._call(
                "put_object",
                Key=self.pointer_key,
                Body=pointer.model_dump_json(indent=2).encode("utf-8"),
                ContentType="application/json",
                CacheControl="no-cache",
                **condition,
            ),
        )

    def fetch(self, pointer: Pointer, dest_root: Path, reuse: Sequence[Path] = ()) -> Path:
        dest = dest_root / pointer.version
        if (dest / MANIFEST).is_file() and sha256_file(dest / MANIFEST) == pointer.manifest_sha256:
            return dest
        body = self._call("get_object", Key=pointer.prefix + MANIFEST)["Body"].read()
        if hashlib.sha256(body).hexdigest() != pointer.manifest_sha256:
            raise ArtifactStoreError(f"{pointer.prefix}{MANIFEST} does not match the pointer's sha256")
        manifest = Manifest.model_validate_json(body)
        partial = dest_root / f".{pointer.version}.partial-{os.getpid()}"
        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True)

        def get(item: tuple[str, Any]) -> None:
            rel, entry = item
            target = partial / rel
            local = _reusable(rel, entry.sha256, entry.bytes, reuse)
            if local is not None:
                link_or_copy(local, target)
                return
            target.parent.mkdir(parents=True, exist_ok=True)
            response = self._call("get_object", Key=pointer.prefix + rel)
            with target.open("wb") as fh:
                shutil.copyfileobj(response["Body"], fh, 1 << 20)

        try:
            with ThreadPoolExecutor(max_workers=self._workers) as pool:
                list(pool.map(get, sorted(manifest.files.items())))
            (partial / MANIFEST).write_bytes(body)
            failures = verify(partial)
            if failures:
                details = "; ".join(f"{f.path}: {f.reason}" for f in failures[:5])
                raise ArtifactStoreError(f"version {pointer.version} failed verification: {details}")
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(partial, dest)
        finally:
            if partial.exists():
                shutil.rmtree(partial, ignore_errors=True)
        return dest


# ---------------------------------------------------------------------------------------------
# local folder (the local demo, and `anime-build delta`)
# ---------------------------------------------------------------------------------------------


class LocalArtifactStore(ArtifactStore):
    """The same layout in a folder: `<root>/<prefix>/<version>/` and `<root>/<pointer_key>`."""

    def __init__(self, root: Path, *, pointer_key: str = "current.json", prefix: str = "versions") -> None:
        self.root = Path(root)
        self.pointer_path = self.root / pointer_key
        self.versions = self.root / prefix.strip("/")

    def __repr__(self) -> str:
        return f"LocalArtifactStore({self.root})"

    def read_pointer(self) -> Pointer | None:
        try:
            return Pointer.model_validate_json(self.pointer_path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValidationError) as exc:
            raise ArtifactStoreError(f"{self.pointer_path} is not a valid pointer: {exc}") from exc

    def find_version(self, version: str) -> VersionRef | None:
        directory = self.versions / version
        if not (directory / MANIFEST).is_file() or verify(directory):
            return None
        manifest = Manifest.read(directory)
        return VersionRef(
            version, f"{self.versions.name}/{version}/", sha256_file(directory / MANIFEST), manifest
        )

    def upload_version(self, bundle_dir: Path) -> VersionRef:
        version = version_id(Manifest.read(bundle_dir))
        existing = self.find_version(version)
        if existing is not None:
            return existing
        partial = self.versions / f".{version}.partial-{os.getpid()}"
        if partial.exists():
            self._write("delete", str(partial), lambda: shutil.rmtree(partial))
        linked: set[str] = set()
        for path in sorted(p for p in bundle_dir.rglob("*") if p.is_file()):
            rel = path.relative_to(bundle_dir).as_posix()
            self._write("copy", f"{partial.name}/{rel}", lambda: link_or_copy(path, partial / rel))  # noqa: B023
            if os.path.samefile(path, partial / rel):
                linked.add(rel)
        # Copies are hashed against the manifest. A hard link *is* the bundle's file, whose digest the
        # manifest was computed from (and every reader verifies on load): its size is checked, its
        # bytes are not hashed a second time (~0.04 s per weekly delta).
        failures = verify(partial, size_only=linked)
        if failures:
            shutil.rmtree(partial, ignore_errors=True)
            raise ArtifactStoreError(f"copy of {version} did not verify: {failures[:5]}")
        target = self.versions / version
        # Under the store's lock: another run may have completed this version meanwhile (a double
        # delivery); its upload is then kept and ours dropped, never the other way round.
        with self._locked():
            completed = (target / MANIFEST).is_file()
            if not completed:
                if target.exists():
                    # An incomplete leftover (no manifest: find_version refused it).
                    self._write("delete", str(target), lambda: shutil.rmtree(target))
                # One rename moves the verified files: no second pass over them.
                self._write("rename", str(target), lambda: os.replace(partial, target))
        if completed:
            shutil.rmtree(partial, ignore_errors=True)
            existing = self.find_version(version)
            if existing is None:
                raise ArtifactStoreError(f"{target} was completed by another run but does not verify")
            return existing
        return VersionRef(
            version, f"{self.versions.name}/{version}/", sha256_file(target / MANIFEST), Manifest.read(target)
        )

    def write_pointer(self, pointer: Pointer, expected: Pointer | None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        # One write as the seam sees it: compare and swap under an exclusive lock on a file beside the
        # pointer, so two local runs cannot both see the pointer they expect (S3 does this with a
        # conditional PUT). The temporary file and the rename happen under the lock.
        self._write("pointer", str(self.pointer_path), lambda: self._swap_pointer(pointer, expected))

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """An exclusive lock on a file in the store (held by one run at a time, across processes)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".store.lock").open("a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _swap_pointer(self, pointer: Pointer, expected: Pointer | None) -> None:
        with self._locked():
            current = self.read_pointer()
            same = (current is None and expected is None) or (
                current is not None
                and expected is not None
                and current.manifest_sha256 == expected.manifest_sha256
            )
            if not same:
                raise ConcurrentPublishError(f"{self.pointer_path} changed since it was read")
            tmp = self.pointer_path.with_name(f".{self.pointer_path.name}.{os.getpid()}.tmp")
            tmp.write_text(pointer.model_dump_json(indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, self.pointer_path)  # atomic on POSIX: readers see the old or the new file

    def fetch(self, pointer: Pointer, dest_root: Path, reuse: Sequence[Path] = ()) -> Path:
        # Nothing is copied, so nothing is hashed here: the files are the store's own, verified when
        # published, and every reader verifies what it loads (`load_bundle`, `load_delta_base`).
        directory = self.versions / pointer.version
        if (
            not (directory / MANIFEST).is_file()
            or sha256_file(directory / MANIFEST) != pointer.manifest_sha256
        ):
            raise ArtifactStoreError(f"{directory} does not hold the pointer's manifest")
        return directory
