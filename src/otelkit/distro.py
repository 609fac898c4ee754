"""``opentelemetry-instrument`` wiring: the otelkit distro and configurator.

The distro sets otelkit's defaults (the SQLite store for every signal, otelkit's configurator);
the configurator builds the SDK through the standard ``_OTelSDKConfigurator`` and adds
otelkit's span processors. :func:`span_processors` and :func:`export_span_processor` are the
one place where the processor chain is assembled, for ``opentelemetry-instrument`` and for
programs that set up a ``TracerProvider`` by hand alike. Like the CLI, this module wires the
plugin packages together, so it may import them.
"""

from __future__ import annotations

import os
from typing import Any, Callable

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]
from opentelemetry.sdk._configuration import _OTelSDKConfigurator
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from otelkit.config import Policy, current_policy
from otelkit.processors.chain import Stage, chain_processors

DEFAULT_ENVIRONMENT = {
    "OTEL_TRACES_EXPORTER": "sqlite",
    "OTEL_METRICS_EXPORTER": "sqlite",
    "OTEL_LOGS_EXPORTER": "sqlite",
    "OTEL_PYTHON_CONFIGURATOR": "otelkit",
}


def span_processors(policy: Policy) -> list[SpanProcessor]:
    """Processors that see every span as it starts, ahead of the export processors."""
    from otelkit.instrumentation.session import SessionSpanProcessor

    return [SessionSpanProcessor()]


# Batching for the SQLite exporter when OTEL_BSP_* leave it open. Each export transaction
# releases and retakes the GIL a few times, and under a CPU-busy application every retake can
# wait a full switch interval (5 ms), so few large batches keep the exporter ahead of the
# application where the SDK's 512-span batches and 2048-span queue would fall behind and drop.
SQLITE_BATCH_DEFAULTS = {
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": ("max_export_batch_size", 4096),
    "OTEL_BSP_MAX_QUEUE_SIZE": ("max_queue_size", 32768),
}


def _batch_processor(exporter: SpanExporter) -> SpanProcessor:
    from otelkit.exporters.sqlite import SQLiteSpanExporter

    options: dict[str, int] = {}
    if isinstance(exporter, SQLiteSpanExporter):
        options = {arg: value for env, (arg, value) in SQLITE_BATCH_DEFAULTS.items() if not os.environ.get(env)}
    return BatchSpanProcessor(exporter, **options)


def chain_stages(policy: Policy) -> list[Stage]:
    """The processor chain's stages, in order, for ``policy``."""
    from otelkit.processors.alerting import AlertStage
    from otelkit.processors.enrich import EnrichStage

    from otelkit.processors.sanitize import SanitizeStage
    from otelkit.processors.tail_sampling import tail_stage

    stages: list[Stage] = [EnrichStage.from_policy(policy)]
    sanitize = SanitizeStage.from_policy(policy)
    if sanitize.active:  # preset "off": not in the chain at all
        stages.append(sanitize)
    alerting = AlertStage.from_policy(policy)  # its store sink writes to policy.store.path
    if alerting.active:  # no rules, or alerts.enabled false: not in the chain at all
        stages.append(alerting)
    tail = tail_stage(policy)
    if tail is not None:  # last: whole-trace decisions on finished, enriched, scrubbed spans
        stages.append(tail)
    return stages


def export_span_processor(policy: Policy) -> Callable[[SpanExporter], SpanProcessor]:
    """How each configured exporter is fed: one processor chain shared by all of them (each
    span passes the stages once), then a batching processor per exporter."""
    return chain_processors(chain_stages(policy), _batch_processor, policy.chain.on_stage_error == "drop")


class OtelkitDistro(BaseDistro):  # type: ignore[misc]
    """Defaults for ``opentelemetry-instrument``: the SQLite store and otelkit's configurator.

    Every default yields to an explicit setting (``--traces_exporter otlp`` or
    ``OTEL_TRACES_EXPORTER=otlp,sqlite``).
    """

    def _configure(self, **kwargs: Any) -> None:
        for name, value in DEFAULT_ENVIRONMENT.items():
            os.environ.setdefault(name, value)


class OtelkitConfigurator(_OTelSDKConfigurator):
    """Builds the SDK (providers, exporters from ``OTEL_*_EXPORTER``) with otelkit's processors."""

    def _configure(self, **kwargs: Any) -> None:
        from otelkit.processors.sampling import sampler_for_environment
        from otelkit.processors.sanitize import export_log_record_processor, metrics_transform, resource_attributes

        policy = current_policy()
        kwargs.setdefault("sampler", sampler_for_environment(policy))  # None: OTEL_TRACES_SAMPLER decides
        kwargs.setdefault("span_processors", span_processors(policy))
        kwargs.setdefault("export_span_processor", export_span_processor(policy))
        kwargs.setdefault("export_log_record_processor", export_log_record_processor(policy))
        clean_resource = resource_attributes(policy, kwargs.get("resource_attributes"))
        if clean_resource is not None:  # every provider starts from the scrubbed resource
            kwargs["resource_attributes"] = clean_resource
        super()._configure(**kwargs)
        from opentelemetry import metrics

        from otelkit.instrumentation import aggregates

        aggregates.attach(metrics.get_meter_provider(), metrics_transform(policy))
