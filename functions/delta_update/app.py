"""Delta-update Lambda handler (EventBridge schedule). Wiring only.

The catalogue location comes from the event (`detail.catalogue_url`, or a top-level `catalogue_url`
when the rule passes a constant input) or else from `CATALOGUE_SOURCE_URL`; a story-text file from
`STORYTEXT_SOURCE_URL` (else the older `SYNOPSES_SOURCE_URL`) when set. Everything else is one call
into `anime_recommender.delta.update.run_delta_update`.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.typing import LambdaContext

from anime_recommender.delta.plan import DeltaPolicy
from anime_recommender.delta.settings import DeltaSettings
from anime_recommender.delta.source import fetch_catalogue, fetch_input
from anime_recommender.delta.update import run_delta_update

settings = DeltaSettings.from_env()
logger = Logger(service=settings.powertools_service_name, level=settings.log_level)
metrics = Metrics(namespace=settings.powertools_metrics_namespace, service=settings.powertools_service_name)
store = settings.store()


def catalogue_location(event: dict[str, Any]) -> str | None:
    """The catalogue URL named by the event, else the configured one."""
    detail = event.get("detail")
    for source in (detail if isinstance(detail, dict) else {}, event):
        value = source.get("catalogue_url")
        if isinstance(value, str) and value.strip():
            return value.strip()
    return settings.catalogue_source_url


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Lambda entry point: returns the delta summary."""
    location = catalogue_location(event)
    if store is None or location is None:
        missing = "ARTIFACTS_BUCKET" if store is None else "CATALOGUE_SOURCE_URL (or detail.catalogue_url)"
        logger.warning("delta update skipped: not configured", extra={"missing": missing})
        return {"status": "skipped", "reason": f"{missing} not configured"}
    catalogue = fetch_catalogue(
        location, settings.work_dir / "incoming", endpoint_url=settings.artifacts_endpoint_url
    )
    storytext = (
        None
        if settings.story_text_url is None
        else fetch_input(
            settings.story_text_url,
            settings.work_dir / "incoming-storytext",
            what="story-text file",
            endpoint_url=settings.artifacts_endpoint_url,
        )
    )
    summary = run_delta_update(
        catalogue,
        store,
        layer_dir=settings.artifacts_dir,
        work_dir=settings.work_dir,
        policy=DeltaPolicy(settings.max_removed_fraction, settings.max_skipped_fraction),
        threads=settings.onnx_threads,
        storytext_path=storytext,
        storytext_adds=settings.storytext_adds,
    )
    for kind in ("added", "changed", "removed"):
        metrics.add_metric(
            name=f"Catalogue{kind.title()}", unit=MetricUnit.Count, value=summary.counts.get(kind, 0)
        )
    metrics.add_metric(name="CatalogueRefused", unit=MetricUnit.Count, value=int(summary.status == "refused"))
    if summary.status == "refused":
        # The reason as a dimension of its own metric, so a dashboard tells a shrink from a broken file.
        with single_metric(
            name="CatalogueRefusedByReason",
            unit=MetricUnit.Count,
            value=1,
            namespace=settings.powertools_metrics_namespace,
            default_dimensions={"service": settings.powertools_service_name},
        ) as metric:
            metric.add_dimension(name="reason", value=summary.refusal_code or "unknown")
    # A double delivery's second run: it ended cleanly, the other run published.
    metrics.add_metric(
        name="DeltaSuperseded", unit=MetricUnit.Count, value=int(summary.status == "superseded")
    )
    metrics.add_metric(
        name="VersionPublished", unit=MetricUnit.Count, value=int(summary.published_version is not None)
    )
    metrics.add_metric(name="DeltaDurationMs", unit=MetricUnit.Milliseconds, value=summary.duration_s * 1000)
    log = logger.warning if summary.status == "refused" else logger.info
    log("delta update " + summary.status, extra={"source": location, **summary.to_dict()})
    return {"source": location, **summary.to_dict()}
