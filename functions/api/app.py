"""API Lambda handler: API Gateway HTTP API (v2) → Mangum → FastAPI. Wiring only.

Everything expensive (settings validation, artifact verification, ONNX session, indexes, title
search structures, DynamoDB client) happens once per container, at import (cold start).
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable

_IMPORT_STARTED = time.perf_counter()
# The cold start allocates ~10^6 long-lived objects (catalogue, title index, pydantic schemas); with
# the cyclic collector on, each allocation burst re-walks the growing heap (measured: init 1.25-1.56 s
# paused vs 1.62-2.32 s not, same machine, interleaved). Reference counting still frees everything.
# At the end of init the survivors are frozen (never scanned again; otherwise the first request pays
# a ~0.1 s collection over all of them) and the collector resumes. A hot-swapped-out version is still
# freed: backend and service form no reference cycles (checked with the collector off).
gc.disable()

from anime_recommender.prefetch import prefetch_bundle  # noqa: E402  (standard library only)

# The bundle's files are hashed and the catalogue inflated on background threads while the imports
# below run (~0.4 s of Python on this thread); `load_serving` takes what they found.
prefetch_bundle()

from aws_lambda_powertools import Logger, Metrics  # noqa: E402
from aws_lambda_powertools.logging import correlation_paths  # noqa: E402
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers  # noqa: E402
from aws_lambda_powertools.metrics import MetricUnit, single_metric  # noqa: E402
from aws_lambda_powertools.shared.functions import resolve_truthy_env_var_choice  # noqa: E402
from aws_lambda_powertools.utilities.typing import LambdaContext  # noqa: E402
from mangum import Mangum  # noqa: E402

from anime_recommender.api.lambda_app import TEXT_MIME_TYPES, load_serving  # noqa: E402
from anime_recommender.api.observability import MetricsObserver  # noqa: E402
from anime_recommender.api.snapstart import RestoreReport, register_hooks  # noqa: E402
from anime_recommender.settings import ApiSettings  # noqa: E402

settings = ApiSettings.from_env()
logger = Logger(service=settings.powertools_service_name, level=settings.log_level)
copy_config_to_registered_loggers(source_logger=logger, include={"anime_recommender"})
metrics = Metrics(namespace=settings.powertools_metrics_namespace, service=settings.powertools_service_name)


def _tracing_enabled() -> bool:
    """powertools' own rule: on in Lambda (not SAM local) unless POWERTOOLS_TRACE_DISABLED is truthy."""
    if resolve_truthy_env_var_choice(env=os.getenv("POWERTOOLS_TRACE_DISABLED", "false")):
        return False
    return bool(os.getenv("LAMBDA_TASK_ROOT")) and not os.getenv("AWS_SAM_LOCAL")


Handler = Callable[[dict, LambdaContext], dict]
if _tracing_enabled():
    # Imported only when used: X-Ray's SDK costs ~0.4 s of init even when tracing ends up disabled.
    import wrapt
    from aws_lambda_powertools import Tracer

    # auto_patch would import and patch, during init, every library X-Ray knows (~0.1 s, nearly all
    # of it importing botocore). botocore is the one this function calls, and only once a DynamoDB
    # lookup builds its client: patch it when that happens, so its calls are still traced. The hook
    # is on botocore.session (every client is made by one), which imports botocore.client and
    # botocore.endpoint, the modules X-Ray wraps, before it runs.
    tracer = Tracer(service=settings.powertools_service_name, auto_patch=False)

    def _trace_botocore(_module: object) -> None:
        try:
            tracer.patch(["botocore"])
        except Exception:  # an untraced DynamoDB call beats a failed lookup
            logger.exception("X-Ray patching of botocore failed; DynamoDB calls are not traced")

    wrapt.register_post_import_hook(_trace_botocore, "botocore.session")
    _traced: Callable[[Handler], Handler] = tracer.capture_lambda_handler(capture_response=False)
else:

    def _traced(func: Handler) -> Handler:
        return func


observer = MetricsObserver(metrics)
serving = load_serving(settings, observer=observer)
observer.tier = serving.backend.info.tier
app = serving.app
# Init time as Lambda sees it: from the first import of this module, not just the bundle load.
app.state.api.init_ms = (time.perf_counter() - _IMPORT_STARTED) * 1000.0
# lifespan="off": Mangum would otherwise run startup/shutdown on every invocation.
# problem+json bodies are text: without it Mangum would base64-encode every error body.
_mangum = Mangum(app, lifespan="off", text_mime_types=[*TEXT_MIME_TYPES])
_cold = True


def _restored(report: RestoreReport) -> None:
    """After a SnapStart restore: the restore metric (flushed at once: no invocation is running)."""
    global _cold
    _cold = False  # the snapshot's init is not this container's cold start
    for name, unit, value in (
        ("SnapStartRestore", MetricUnit.Count, 1.0),
        ("SnapStartRestoreMs", MetricUnit.Milliseconds, report.seconds * 1000),
        ("SnapStartRestoreSwapped", MetricUnit.Count, float(report.swapped)),
    ):
        with single_metric(
            name=name,
            unit=unit,
            value=value,
            namespace=settings.powertools_metrics_namespace,
            default_dimensions={"service": settings.powertools_service_name},
        ):
            pass


# SnapStart's runtime hooks (no-ops without SnapStart): warm before the snapshot, renew after a restore.
register_hooks(app.state.api, serving.provider, settings, _restored)
gc.freeze()
gc.enable()
logger.info(
    "api initialised",
    extra={
        "tier": serving.backend.info.tier,
        "init_ms": round(app.state.api.init_ms, 1),
        "failures": list(serving.backend.info.failures),
    },
)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@_traced
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    """Lambda entry point."""
    global _cold
    if _cold:
        _cold = False
        metrics.add_metric(name="ColdStartInitMs", unit=MetricUnit.Milliseconds, value=app.state.api.init_ms)
    # Mangum and powertools each ship a Protocol for the same runtime context object.
    response: dict = _mangum(event, context)  # type: ignore[arg-type]
    return response
