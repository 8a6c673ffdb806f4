"""Per-text string functions run over many texts at once: one regex pass over their join.

The cold start keys every title of the catalogue several ways (franchise keys, the search parser's
exact titles, autocomplete names). Per title, each is a handful of regex calls; over 17.5k titles the
call overhead dominates. Texts the batch form handles (ASCII, no newline: nearly every title) are
joined with '\\n' and transformed once; the rest, and any line the batch form gives up on, take the
per-text function. Every caller keeps its per-text function as the definition and tests that the
batch gives the same result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


def map_joined(
    texts: Sequence[str],
    per_text: Callable[[str], str],
    per_batch: Callable[[str], Sequence[str | None]],
    *,
    batchable: Callable[[str], bool] = str.isascii,
) -> list[str]:
    """`[per_text(t) for t in texts]`, computed for the batchable texts by `per_batch` on their join.

    Args:
        texts: the inputs.
        per_text: the definition, applied to texts that are not batchable (or contain '\\n').
        per_batch: gets the batchable texts joined by '\\n', returns one value per line, or None
            for a line whose value only `per_text` can give.
        batchable: which texts `per_batch` handles (a text with '\\n' never is).
    """
    out = [""] * len(texts)
    fast: list[int] = []
    for i, text in enumerate(texts):
        if "\n" not in text and batchable(text):
            fast.append(i)
        else:
            out[i] = per_text(text)
    if not fast:  # joining nothing gives "", whose one (empty) line belongs to no text
        return out
    values = per_batch("\n".join([texts[i] for i in fast]))
    for i, value in zip(fast, values, strict=True):
        out[i] = per_text(texts[i]) if value is None else value
    return out
