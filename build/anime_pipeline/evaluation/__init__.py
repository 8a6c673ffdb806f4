"""Offline evaluation: the `evaluate` stage's report, free-text search quality, plain baselines.

* `report` (the report's sections) and `cli` (`anime-build evaluate`), over `devset` (real viewers'
  recommendations and their metrics), `methods` (V1/V2/vector/popularity top-k), `final_ranking` (the API's
  ranking over candidate pools, and its tuning), `franchise` (franchise lists) and `markdown`;
* `search_eval` (`anime-build search-eval`): hit@10 / MRR on the descriptive query set;
* `baselines` (V1 tag similarities) and `text_baselines` (plain BM25 search and TF-IDF recommendations
  over story text, the bar the learned parts must clear);
* `embedding_eval`: numpy metrics shared with the train and export stages.
"""
