"""Free-text search: query understanding, a BM25 lexical index and the hybrid ranking.

`titles` is the autocomplete index over titles and synonyms; `query` parses what a viewer asks for
(genres in their own words, type, era, length, titles, negations); `lexical` is the BM25 index over
titles, synonyms, tags and story text; `hybrid` fuses lexical, dense (int8 ONNX + hnswlib) and tag
evidence with the popularity/quality prior.
Nothing here imports `api/` or `delta/`.
"""
