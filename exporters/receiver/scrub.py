"""``otelkit serve --sanitize``: the policy's sanitize rules on ingested rows, before storage.

For senders that do not scrub (other languages, a Collector without a redaction processor).
The same :class:`~otelkit.processors.sanitize.Scrubber` as in-process works on the converted
rows: span attributes, names, status messages, events and links; resource and scope
attributes before they are interned; log bodies and attributes; metric point attributes. A
span or log record that had something scrubbed counts it in ``otelkit.sanitize.*`` as
in-process. Rows with nothing to scrub are passed on as they are.
"""

from __future__ import annotations

from typing import Any, Mapping

import orjson

from otelkit.exporters.receiver.convert import Converted
from otelkit.processors.sanitize import Scrubber, record_counts
from otelkit.store.writer import LOG_COLUMNS, METRIC_COLUMNS, SPAN_COLUMNS, to_json

_S_NAME, _S_STATUS, _S_ATTRS, _S_LINKS, _S_RESOURCE = (
    SPAN_COLUMNS.index(c) for c in ("name", "status_message", "attributes", "links", "resource_id")
)
_L_BODY, _L_ATTRS, _L_RESOURCE = (LOG_COLUMNS.index(c) for c in ("body", "attributes", "resource_id"))
_M_ATTRS = METRIC_COLUMNS.index("attributes")


class RowScrubber:
    """Scrubs converted rows in place; resource hits are remembered per resource row id so every
    span or record of a scrubbed resource counts them, as in-process."""

    def __init__(self, scrubber: Scrubber) -> None:
        self.scrubber = scrubber
        self.resource_hits: dict[int, tuple[str, ...]] = {}

    def attributes(self, attributes: Mapping[str, Any] | None) -> tuple[dict[str, Any] | None, list[str]]:
        """Scrubbed resource or scope attributes (None when clean) and the rules that fired."""
        hits: list[str] = []
        return self.scrubber.scrub_attributes(attributes, hits), hits

    def _json(self, text: str | None, hits: list[str]) -> dict[str, Any] | None:
        if not text or text == "{}":
            return None
        return self.scrubber.scrub_attributes(orjson.loads(text), hits)

    def spans(self, converted: Converted) -> None:
        scrub_string = self.scrubber.scrub_string
        events_of: dict[tuple[str, str], list[int]] = {}
        for index, event in enumerate(converted.events):
            events_of.setdefault((event[0], event[1]), []).append(index)
        for i, row in enumerate(converted.rows):
            hits: list[str] = []
            original = converted.attributes[i]
            attributes = self.scrubber.scrub_attributes(original, hits)
            name = scrub_string(row[_S_NAME], hits)
            status = scrub_string(row[_S_STATUS], hits) if row[_S_STATUS] else row[_S_STATUS]
            links = row[_S_LINKS]
            if links:
                parsed = orjson.loads(links)
                changed = False
                for link in parsed:
                    scrubbed = self.scrubber.scrub_attributes(link.get("attributes"), hits)
                    if scrubbed is not None:
                        link["attributes"], changed = scrubbed, True
                links = to_json(parsed) if changed else links
            for index in events_of.get((row[0], row[1]), ()):
                event = converted.events[index]
                before = len(hits)
                event_attributes = self._json(event[4], hits)
                event_name = scrub_string(event[3], hits)
                if len(hits) != before:
                    converted.events[index] = (*event[:3], event_name,
                                               event[4] if event_attributes is None else to_json(event_attributes))  # fmt: skip
            resource_hits = self.resource_hits.get(row[_S_RESOURCE], ())
            if not hits and not resource_hits:
                continue
            kept = dict(original) if attributes is None else attributes
            record_counts(kept, hits + list(resource_hits))
            converted.attributes[i] = kept
            fixed = list(row)
            fixed[_S_NAME], fixed[_S_STATUS], fixed[_S_ATTRS], fixed[_S_LINKS] = name, status, to_json(kept), links
            converted.rows[i] = tuple(fixed)

    def logs(self, converted: Converted) -> None:
        for i, row in enumerate(converted.rows):
            hits: list[str] = []
            body = self.scrubber.scrub_body(row[_L_BODY], hits) if row[_L_BODY] else row[_L_BODY]
            original = orjson.loads(row[_L_ATTRS]) if row[_L_ATTRS] else {}
            attributes = self.scrubber.scrub_attributes(original, hits)
            resource_hits = self.resource_hits.get(row[_L_RESOURCE], ())
            if not hits and not resource_hits:
                continue
            kept = dict(original) if attributes is None else attributes
            record_counts(kept, hits + list(resource_hits))
            fixed = list(row)
            fixed[_L_BODY] = body if body is None or isinstance(body, str) else to_json(body)
            fixed[_L_ATTRS] = to_json(kept)
            converted.rows[i] = tuple(fixed)

    def metrics(self, converted: Converted) -> None:
        for i, row in enumerate(converted.rows):
            attributes = self._json(row[_M_ATTRS], [])
            if attributes is not None:
                fixed = list(row)
                fixed[_M_ATTRS] = to_json(attributes)
                converted.rows[i] = tuple(fixed)

    def rows(self, signal: str, converted: Converted) -> None:
        """Scrub ``converted`` (of ``signal``) in place."""
        {"traces": self.spans, "logs": self.logs, "metrics": self.metrics}[signal](converted)

