"""otelkit exporters: the SQLite store exporters (:mod:`.sqlite`) and, later, the OTLP receiver."""
