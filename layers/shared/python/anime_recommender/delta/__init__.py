"""Delta updates: validate and diff a new catalogue, apply it to a bundle, publish it.

* `plan` — `load_new_catalogue`, `plan_delta` → `DeltaPlan`, `DeltaPolicy`, `DeltaRefusedError`;
* `base` — `load_base_records`, `load_delta_base`, `load_base_release_dates`: the verified parts of
  the base bundle a delta reads;
* `lists` — `update_neighbours`: the V2 lists, touched ones recomputed, the rest merged;
* `apply` — `apply_delta`: write the new version (reusing unchanged files) from a plan;
* `indexer` — `IndexWorker`: the model and indexes in a forked process (embed only the added anime
  and the changed ones whose encoder text changed, update the indexes) beside the Python work of
  validation and the V2 lists;
* `lexical` — `LexicalBuild`: the new catalogue's BM25 index (/search) rebuilt in a forked child
  beside the same work;
* `forked` — `ForkedJob`: the one fork-or-thread job runner both of them use (pipe, timeout, "died");
* `update` — `run_delta_update`, the one call of the Lambda handler and `anime-build delta` (story text
  is merged from an optional story-text file, else carried from the base bundle);
* `source` — fetch the catalogue from s3://, https:// or a path; `settings` — env configuration.

The domain holds what the API shares with it: `anime_recommender.store` (`ArtifactStore`, `Pointer`:
versioned publish, the atomic pointer flip, `servable`), `anime_recommender.runtime` (`paused_gc`).
The API's hot swap is `api/refresh.py`; this package never imports the API.
"""
