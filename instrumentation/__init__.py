"""otelkit.instrumentation: the API (decorators / context managers), sessions, autowrap.

Library instrumentors (``BaseInstrumentor`` subclasses, one module per library) live here too
and are registered under the ``opentelemetry_instrumentor`` entry point.
"""
