"""The load report is JSON-ready."""

from __future__ import annotations

import json
from pathlib import Path

from loaders_support import RECORDS, load, pretty, write


def test_report_to_dict_is_json(tmp_path: Path) -> None:
    result = load(write(tmp_path, "r.json", pretty([*RECORDS, {"title": 1}])))
    data = json.loads(json.dumps(result.report.to_dict()))
    assert data["loaded"] == 3 and data["records_read"] == 4 and data["skipped_count"] == 1
    assert data["skipped_by_reason"] == {"title": 1}
    assert data["metadata"]["repository"].endswith("anime-offline-database")
