"""otelkit processors: the in-process chain between instrumentation and export.

The otelkit configurator (:mod:`otelkit.distro`) installs whatever this package provides; the
stages (sampling, sanitize, enrich, alerting) arrive with their own modules.
"""
