"""otelkit serve: the OTLP receiver that stores telemetry from any language."""
