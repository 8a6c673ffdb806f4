"""The weekly update survives anything (`anime_pipeline.bench.delta_faults`), on S3 served by moto over HTTP.

A sample of crash points here (the full set: `make test-slow`, and `anime-build bench`'s delta section);
every figure goes to the terminal summary.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import boto3
import pytest
from reliability_support import SUMMARY_LINES

from anime_pipeline.bench.delta_faults import (
    FaultRig,
    StoreSpec,
    bad_inputs,
    crash_at_every_write,
    double_delivery,
    swap_under_load,
)


@pytest.fixture
def rig(bundle_template: Path, moto_endpoint: str, tmp_path: Path) -> FaultRig:
    bucket = f"faults-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    layer = Path(shutil.copytree(bundle_template, tmp_path / "layer"))
    return FaultRig(
        layer=layer, store=StoreSpec(bucket=bucket, endpoint_url=moto_endpoint), root=tmp_path / "rig"
    )


def _crash_line(report: dict[str, int], scope: str) -> str:
    return (
        f"delta crash points ({scope}): tried {report['tried']} of {report['writes_per_run']} writes "
        f"({report['killed']} by SIGKILL), survived {report['survived']}, "
        f"versions lost {report['versions_lost']}"
    )


def test_a_crash_at_sampled_writes_loses_no_version(rig: FaultRig) -> None:
    report = crash_at_every_write(rig, sample=6, kills=2).to_dict()
    SUMMARY_LINES.append(_crash_line(report, "sample"))
    assert report["tried"] >= 6 and report["killed"] == 2
    assert report["survived"] == report["tried"], report["points"]
    assert report["versions_lost"] == 0


@pytest.mark.slow
def test_a_crash_at_every_write_loses_no_version(rig: FaultRig) -> None:
    report = crash_at_every_write(rig, kills=4).to_dict()
    SUMMARY_LINES.append(_crash_line(report, "every write"))
    assert report["tried"] == report["writes_per_run"] == report["survived"], report["points"]
    assert report["versions_lost"] == 0


def test_double_delivery_publishes_one_version_and_the_other_run_says_why(rig: FaultRig) -> None:
    rig.run(rig.next_week())
    rig.adopt_published()
    report = double_delivery(rig).to_dict()
    SUMMARY_LINES.append(
        f"delta double delivery: {len(report['scenarios'])} scenarios, versions published per delivery "
        f"{report['versions_published']}, ok {report['ok']}"
    )
    assert report["ok"] and report["versions_published"] == 1, report["scenarios"]
    for scenario in report["scenarios"].values():
        losers = [run for run in (scenario["first"], scenario["second"]) if run["status"] == "superseded"]
        assert all(run["reason"] and "another run moved the pointer" in run["reason"] for run in losers)


def test_bad_upstream_data_is_refused_with_its_reason_and_publishes_nothing(rig: FaultRig) -> None:
    report = bad_inputs(rig)
    SUMMARY_LINES.append(
        f"delta bad inputs: {report['refused']} of {report['tried']} refused, nothing published"
    )
    assert report["tried"] == 7
    assert report["refused"] == report["tried"], [
        (k, v["status"], v["code"]) for k, v in report["inputs"].items()
    ]


def test_a_swap_under_load_loses_no_request_and_mixes_no_versions(
    bundle_template: Path, tmp_path: Path
) -> None:
    layer = Path(shutil.copytree(bundle_template, tmp_path / "layer"))
    report = swap_under_load(layer, tmp_path)
    SUMMARY_LINES.append(
        f"delta swap under load: {report['requests']} requests over {report['connections']} connections, "
        f"errors {report['errors']}, answers per version {report['versions']}"
    )
    assert report["published"] == "published" and report["requests"] == 2_000
    assert report["errors"] == 0 and report["unlabelled"] == 0, report
    assert report["both_versions_answered"], report["versions"]
    # The anime the delta adds is found exactly by the answers that name the new version
    assert report["probe_answers"] > 0 and report["probe_mismatches"] == 0


def test_double_delivery_on_a_local_store_publishes_one_version(
    bundle_template: Path, tmp_path: Path
) -> None:
    # `anime-build delta` publishes to a folder: its compare-and-swap and upload rename hold a file lock
    layer = Path(shutil.copytree(bundle_template, tmp_path / "layer"))
    rig = FaultRig(layer=layer, store=StoreSpec(local_root=str(tmp_path / "store")), root=tmp_path / "rig")
    rig.run(rig.next_week())
    rig.adopt_published()
    report = double_delivery(rig).to_dict()
    assert report["ok"] and report["versions_published"] == 1, report["scenarios"]
