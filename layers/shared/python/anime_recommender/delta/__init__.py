"""Delta updates: validate and diff a new catalogue, apply it to a bundle, publish it, hot-swap it.

* `plan` — `load_new_catalogue`, `plan_delta` → `DeltaPlan`, `DeltaPolicy`, `DeltaRefusedError`;
* `apply` — `load_base_records`, `load_delta_base` (the verified parts a delta reads), `apply_delta`
  (merge the V2 lists, write the new version reusing unchanged files);
* `indexer` — `IndexWorker`: the model and indexes in a forked process (embed only added/changed
  anime, update the indexes) beside the Python work of validation and the V2 lists;
* `store` — `ArtifactStore` (`S3ArtifactStore`, `LocalArtifactStore`), `Pointer`: versioned publish
  and the atomic pointer flip;
* `update` — `run_delta_update`, the one call of the Lambda handler and `anime-build delta`;
* `refresh` — `RefreshingBundleProvider`, the API's hot-swapping `bundle_provider`;
* `source` — fetch the catalogue from s3://, https:// or a path; `settings` — env configuration;
* `runtime` — `paused_gc` for the allocation-heavy validate / load phases.

Import from the submodules: `refresh` pulls in the API package, which the delta function does not need.
"""
