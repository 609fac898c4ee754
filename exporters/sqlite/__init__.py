"""SQLite exporters for traces, metrics and logs, registered under the entry point name ``sqlite``."""

from otelkit.exporters.sqlite.logs import SQLiteLogExporter
from otelkit.exporters.sqlite.metrics import SQLiteMetricExporter
from otelkit.exporters.sqlite.spans import SQLiteSpanExporter

__all__ = ["SQLiteLogExporter", "SQLiteMetricExporter", "SQLiteSpanExporter"]
