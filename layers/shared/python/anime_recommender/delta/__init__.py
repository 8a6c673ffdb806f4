"""Delta updates: validate and diff a new catalogue, apply it to a bundle, publish it, hot-swap it.

* `plan` — `load_new_catalogue`, `plan_delta` → `DeltaPlan`, `DeltaPolicy`, `DeltaRefusedError`;
* `apply` — `apply_delta` (embed only added/changed, update indexes and V2 lists, new manifest);
* `store` — `ArtifactStore` (`S3ArtifactStore`, `LocalArtifactStore`), `Pointer`: versioned publish
  and the atomic pointer flip;
* `update` — `run_delta_update`, the one call of the Lambda handler and `anime-build delta`;
* `refresh` — `RefreshingBundleProvider`, the API's hot-swapping `bundle_provider`;
* `source` — fetch the catalogue from s3://, https:// or a path; `settings` — env configuration.

Import from the submodules: `refresh` pulls in the API package, which the delta function does not need.
"""
