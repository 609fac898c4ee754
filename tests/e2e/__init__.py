"""End-to-end tests with the real Collector, Jaeger and telemetrygen (see conftest.py).

A package, so its conftest is ``e2e.conftest`` and never shadows ``tests/conftest.py``, which
other test modules import as ``conftest``.
"""
