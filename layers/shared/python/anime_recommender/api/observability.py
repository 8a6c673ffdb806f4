"""Request observers: powertools metrics in Lambda, a debug log elsewhere."""

from __future__ import annotations

import logging

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

logger = logging.getLogger(__name__)


class LogObserver:
    """Logs each request at debug level (local server, tests)."""

    def on_request(self, route: str, method: str, status: int, latency_ms: float, cache: str | None) -> None:
        """Record a finished request."""
        logger.debug(
            "request",
            extra={"route": route, "method": method, "status": status, "ms": latency_ms, "cache": cache},
        )


class MetricsObserver:
    """CloudWatch EMF metrics through powertools: latency per route, cache hits/misses, errors, tier."""

    def __init__(self, metrics: Metrics, tier: str = "unknown") -> None:
        self.metrics = metrics
        # Set once the bundle is loaded (the observer must exist before the app is built).
        self.tier = tier

    def on_request(self, route: str, method: str, status: int, latency_ms: float, cache: str | None) -> None:
        """Add this request's metrics; `log_metrics` on the handler flushes them per invocation."""
        # Per-route latency lives in its own EMF document so the dimension does not leak to the rest.
        with single_metric(
            name="Latency",
            unit=MetricUnit.Milliseconds,
            value=latency_ms,
            namespace=self.metrics.namespace,
            default_dimensions={"service": str(self.metrics.service)},
        ) as metric:
            metric.add_dimension(name="route", value=f"{method} {route}")
        self.metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
        self.metrics.add_metric(name=f"Tier_{self.tier}", unit=MetricUnit.Count, value=1)
        if status >= 500:
            self.metrics.add_metric(name="ServerErrors", unit=MetricUnit.Count, value=1)
        elif status >= 400:
            self.metrics.add_metric(name="ClientErrors", unit=MetricUnit.Count, value=1)
        if cache == "hit":
            self.metrics.add_metric(name="CacheHit", unit=MetricUnit.Count, value=1)
        elif cache == "miss":
            self.metrics.add_metric(name="CacheMiss", unit=MetricUnit.Count, value=1)
