"""MyAnimeList XML list exports as the sites write them, for the import route's bench and tests.

A realistic list: every status, scores 0-10, titles in CDATA, the `<myinfo>` header and the per-entry
fields MyAnimeList's "Export" writes (most of which the importer ignores). Hostile files for the
import's refusal checks are built here too, so the bench and the tests send the same bytes.
"""

from __future__ import annotations

import gzip
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

# MyAnimeList's export names for the five statuses.
STATUS_NAMES = ("Watching", "Completed", "On-Hold", "Dropped", "Plan to Watch")


@dataclass(frozen=True, slots=True)
class ExportEntry:
    """One list entry as written into the file: the id is text, so tests can write malformed ones."""

    anime_id: str
    status: str
    score: int = 0
    title: str = ""


def mal_export_xml(entries: Iterable[ExportEntry], user: str = "viewer") -> bytes:
    """The XML export's bytes (UTF-8), with the header comment and `<myinfo>` MyAnimeList writes."""
    rows = list(entries)
    counts = {name: sum(e.status == name for e in rows) for name in STATUS_NAMES}
    parts = [
        '<?xml version="1.0" encoding="UTF-8" ?>\n',
        "<!--\n Created by XML Export feature at MyAnimeList.net\n Version 1.1.0\n-->\n",
        "<myanimelist>\n\n\t<myinfo>\n",
        f"\t\t<user_id>1234567</user_id>\n\t\t<user_name>{user}</user_name>\n",
        "\t\t<user_export_type>1</user_export_type>\n",
        f"\t\t<user_total_anime>{len(rows)}</user_total_anime>\n",
        f"\t\t<user_total_watching>{counts['Watching']}</user_total_watching>\n",
        f"\t\t<user_total_completed>{counts['Completed']}</user_total_completed>\n",
        f"\t\t<user_total_onhold>{counts['On-Hold']}</user_total_onhold>\n",
        f"\t\t<user_total_dropped>{counts['Dropped']}</user_total_dropped>\n",
        f"\t\t<user_total_plantowatch>{counts['Plan to Watch']}</user_total_plantowatch>\n",
        "\t</myinfo>\n\n",
    ]
    for entry in rows:
        parts.append(
            "\t<anime>\n"
            f"\t\t<series_animedb_id>{entry.anime_id}</series_animedb_id>\n"
            f"\t\t<series_title><![CDATA[{entry.title or 'Title ' + entry.anime_id}]]></series_title>\n"
            "\t\t<series_type>TV</series_type>\n\t\t<series_episodes>12</series_episodes>\n"
            "\t\t<my_id>0</my_id>\n\t\t<my_watched_episodes>12</my_watched_episodes>\n"
            "\t\t<my_start_date>0000-00-00</my_start_date>\n\t\t<my_finish_date>0000-00-00</my_finish_date>\n"
            "\t\t<my_rated></my_rated>\n"
            f"\t\t<my_score>{entry.score}</my_score>\n"
            "\t\t<my_storage></my_storage>\n\t\t<my_storage_value>0.00</my_storage_value>\n"
            f"\t\t<my_status>{entry.status}</my_status>\n"
            "\t\t<my_comments><![CDATA[]]></my_comments>\n\t\t<my_times_watched>0</my_times_watched>\n"
            "\t\t<my_rewatch_value></my_rewatch_value>\n\t\t<my_priority>LOW</my_priority>\n"
            "\t\t<my_tags><![CDATA[]]></my_tags>\n\t\t<my_rewatching>0</my_rewatching>\n"
            "\t\t<my_rewatching_ep>0</my_rewatching_ep>\n\t\t<my_discuss>1</my_discuss>\n"
            "\t\t<my_sns>default</my_sns>\n\t\t<update_on_import>0</update_on_import>\n"
            "\t</anime>\n\n"
        )
    parts.append("</myanimelist>\n")
    return "".join(parts).encode("utf-8")


def random_list(
    ids: Sequence[int], size: int, seed: int = 0, members: Sequence[float] | None = None
) -> list[ExportEntry]:
    """A plausible list of `size` distinct ids: mostly Completed, every status, scores 0-10.

    With `members` (one per id), ids are drawn in proportion to them, as real lists are: the chance
    that a MyAnimeList member lists an anime is its member count over all members.
    """
    rng = random.Random(seed)
    count = min(size, len(ids))
    if members is None:
        chosen = rng.sample(list(ids), count)
    else:
        weights = np.asarray(members, dtype=np.float64)
        weights = np.where(np.isfinite(weights) & (weights > 0), weights, 0.0) + 1.0
        picks = np.random.default_rng(seed).choice(len(ids), count, replace=False, p=weights / weights.sum())
        chosen = [int(ids[i]) for i in picks]
    weights_by_status = (10, 55, 5, 8, 22)  # watching, completed, on-hold, dropped, plan to watch (in %)
    entries = []
    for anime_id in chosen:
        status = rng.choices(STATUS_NAMES, weights=weights_by_status)[0]
        score = (
            0 if status == "Plan to Watch" or rng.random() < 0.2 else rng.choice((3, 5, 6, 7, 7, 8, 8, 9, 10))
        )
        entries.append(ExportEntry(str(anime_id), status, score))
    return entries


def hostile_files() -> dict[str, tuple[bytes, str]]:
    """Files the import must refuse, by name: (body, content type)."""
    # The classic entity-expansion bomb: lol9 expands to 10^9 "lol"s.
    entities = [' <!ENTITY lol0 "lol">\n']
    entities += [f' <!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">\n' for i in range(1, 10)]
    billion = (
        '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n'
        + "".join(entities)
        + "]>\n<myanimelist><anime><series_animedb_id>&lol9;</series_animedb_id></anime></myanimelist>\n"
    )
    external = (
        '<?xml version="1.0"?>\n<!DOCTYPE myanimelist [<!ENTITY secret SYSTEM "file:///etc/passwd">]>\n'
        "<myanimelist><anime><series_animedb_id>&secret;</series_animedb_id></anime></myanimelist>\n"
    )
    dtd = (
        '<?xml version="1.0"?>\n<!DOCTYPE myanimelist SYSTEM "http://example.com/list.dtd">\n'
        "<myanimelist></myanimelist>\n"
    )
    padding = b"<!-- " + b"x" * (7 * 1024 * 1024) + b" -->"
    seven_mb = mal_export_xml([ExportEntry("1", "Completed", 9)]).replace(
        b"<myanimelist>", b"<myanimelist>" + padding
    )
    bomb = gzip.compress(b"<myanimelist>" + b" " * (64 * 1024 * 1024) + b"</myanimelist>", compresslevel=9)
    many = mal_export_xml(ExportEntry(str(i), "Completed", 7) for i in range(1, 20_001))
    return {
        "billion_laughs": (billion.encode(), "application/xml"),
        "external_entity": (external.encode(), "application/xml"),
        "dtd": (dtd.encode(), "application/xml"),
        "seven_mb": (seven_mb, "application/xml"),
        "gzip_bomb": (bomb, "application/gzip"),
        "wrong_root": (b'<?xml version="1.0"?><animelist><anime/></animelist>', "application/xml"),
        "not_xml": (b"series_animedb_id,my_status\n1,Completed\n", "application/xml"),
        "json": (b'{"anime": [1, 5]}', "application/json"),
        "twenty_thousand_entries": (gzip.compress(many), "application/gzip"),
        "truncated_gzip": (
            gzip.compress(mal_export_xml([ExportEntry("1", "Completed", 9)]))[:40],
            "application/gzip",
        ),
    }
