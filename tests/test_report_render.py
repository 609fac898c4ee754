"""The report renderers (table, CSV, HTML) over hand-built documents in the docs/report-format.md shape.

The documents carry every format, trace cells with and without a link, an empty table, one
chart of each kind, nulls and hostile strings, so each test checks that user data is shown
literally and every value survives its format.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from importlib import resources
from typing import Any

import pytest

from otelkit.report.formatting import format_value, link_target, printable, truncate
from otelkit.report.render import render_json, render_table
from otelkit.report.render_csv import render_csv
from otelkit.report.render_html import chart_data, render_html

HOSTILE = "<script>alert(1)</script>"
MARKUP = "[bold]x[/bold]"
QUOTED = '"quoted", commas'
UNICODE = "naïve 漢字 — ✓"
MATH = "$x$ and $y$"
TRACE_A = "0af7651916cd43dd8448eb211c80319c"
TRACE_B = "4bf92f3577b34da6a3ce929d0e0e4736"
URL_A = f"http://localhost:16686/trace/{TRACE_A}"
SVG_NAMESPACES = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}


def _overview() -> dict[str, Any]:
    fields = [
        ("spans", "Spans", "int"),
        ("ratio", "Ratio", "float"),
        ("p95", "p95 ms", "ms"),
        ("success", "Success", "rate"),
        ("share", "Share", "share"),
        ("change", "Change", "change"),
        ("cost", "Cost", "usd"),
        ("first", "First seen", "time"),
        ("wall", "Wall time", "duration_s"),
        ("score", "Score", "score"),
        ("name", "Name", "text"),
        ("trend", "Trend", "change"),
    ]
    return {
        "title": "Overview",
        "fields": [{"key": key, "label": label, "format": fmt} for key, label, fmt in fields],
        "values": {
            "spans": 12345,
            "ratio": 1 / 3,
            "p95": 12.3456,
            "success": 0.9999,
            "share": 0.975,
            "change": 0.25,
            "cost": 0.0123,
            "first": "2026-11-01T10:00:00Z",
            "wall": 3725.0,
            "score": 7.26,
            "name": MARKUP,
            "trend": None,
            "sampled": True,
        },
        "tables": {},
        "charts": [],
        "notes": [f"a note with {MARKUP} and {HOSTILE}"],
    }


def _llm() -> dict[str, Any]:
    by_model = {
        "title": "By model",
        "columns": [
            {"key": "model", "label": "Model", "format": "text"},
            {"key": "calls", "label": "Calls", "format": "int"},
            {"key": "cost_usd", "label": "Cost", "format": "usd"},
            {"key": "trace_id", "label": "Trace", "format": "trace", "link": "trace_url"},
        ],
        "rows": [
            {"model": HOSTILE, "calls": 2, "cost_usd": 150.5, "trace_id": TRACE_A, "trace_url": URL_A},
            {"model": QUOTED, "calls": 1, "cost_usd": 0.1, "trace_id": TRACE_B},
            {"model": f"{UNICODE} {MATH} {MARKUP}", "calls": 1, "cost_usd": None, "trace_id": None, "extra": False},
        ],
    }
    per_day = {
        "title": "Per day",
        "columns": [
            {"key": "day", "label": "Day", "format": "time"},
            {"key": "cost_usd", "label": "Cost", "format": "usd"},
        ],
        "rows": [{"day": f"2026-11-0{day}", "cost_usd": day * 0.5} for day in range(1, 8)],
    }
    latency = {
        "title": "Latency",
        "columns": [
            {"key": "bucket", "label": "Bucket", "format": "text"},
            {"key": "count", "label": "Count", "format": "int"},
        ],
        "rows": [
            {"bucket": "<10ms", "count": 5},
            {"bucket": "10-100ms", "count": 12},
            {"bucket": "≥100ms", "count": 3},
        ],
    }
    failures = {"title": "Failures", "columns": [{"key": "what", "label": "What", "format": "text"}], "rows": []}
    return {
        "title": f"LLM {HOSTILE}",
        "fields": [{"key": "calls", "label": "Calls", "format": "int"}],
        "values": {"calls": 4},
        "tables": {"by_model": by_model, "per_day": per_day, "latency": latency, "failures": failures},
        "charts": [
            {"title": "Cost per day", "kind": "line", "table": "per_day", "x": "day", "y": ["cost_usd"]},
            {
                "title": f"Calls by model {HOSTILE}",
                "kind": "bar",
                "table": "by_model",
                "x": "model",
                "y": ["calls", "cost_usd"],
            },
            {"title": "Cost by model", "kind": "hbar", "table": "by_model", "x": "model", "y": ["cost_usd"]},
            {"title": "Latency buckets", "kind": "histogram", "table": "latency", "x": "bucket", "y": ["count"]},
        ],
        "notes": [],
    }


@pytest.fixture
def document() -> dict[str, Any]:
    return {
        "report": {
            "period": "7d",
            "since": "2026-11-01T00:00:00Z",
            "until": "2026-11-08T00:00:00Z",
            "previous_since": "2026-10-25T00:00:00Z",
            "previous_until": "2026-11-01T00:00:00Z",
            "service": "checkout",
            "generated_at": "2026-11-08T09:00:00Z",
            "source": "rollups",
            "jaeger_url": "http://localhost:16686",
            "sections": ["overview", "llm"],
        },
        "summary": {"spans": 12345},
        "operations": [],
        "sections": {"overview": _overview(), "llm": _llm()},
    }


# --- format_value ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "fmt", "shown"),
    [
        ("<script>", "text", "<script>"),
        (MARKUP, "text", MARKUP),
        (12345, "int", "12,345"),
        (0, "int", "0"),
        (1 / 3, "float", "0.333"),
        (1.5, "float", "1.5"),
        (2.0, "float", "2"),
        (1234.5, "float", "1,234.5"),
        (12.3456, "ms", "12.35"),
        (1234.5, "ms", "1,234.50"),
        (0.12345, "ms", "0.123"),
        (0.975, "rate", "97.5%"),
        (0.9999, "rate", "99.9%"),
        (0.29, "rate", "29.0%"),
        (1.0, "rate", "100.0%"),
        (0.0, "rate", "0.0%"),
        (0.975, "share", "97.5%"),
        (0.9999, "share", "100.0%"),
        (0.25, "change", "+25.0%"),
        (-0.031, "change", "-3.1%"),
        (0.0123, "usd", "$0.0123"),
        (99.5, "usd", "$99.5000"),
        (150.5, "usd", "$150.50"),
        (12345.678, "usd", "$12,345.68"),
        ("2026-11-01T10:00:00Z", "time", "2026-11-01T10:00:00Z"),
        (3725.0, "duration_s", "1h 02m"),
        (185.0, "duration_s", "3m 05s"),
        (12.34, "duration_s", "12.3s"),
        (0.0323, "duration_s", "32ms"),
        (0.0042, "duration_s", "4.2ms"),
        (59.97, "duration_s", "1m 00s"),
        (3599.9, "duration_s", "1h 00m"),
        (TRACE_A, "trace", TRACE_A),
        (7.26, "score", "7.3"),
        (3.0, "score", "3.0"),
        (True, "text", "true"),
    ],
)
def test_format_value_follows_the_spec_table(value: Any, fmt: str, shown: str) -> None:
    assert format_value(value, fmt) == shown


@pytest.mark.parametrize(
    "fmt", ["text", "int", "float", "ms", "rate", "share", "change", "usd", "time", "duration_s", "trace", "score"]
)
def test_null_shows_as_a_dash_in_every_format(fmt: str) -> None:
    assert format_value(None, fmt) == "-"


def test_link_target_keeps_only_http_links() -> None:
    column = {"key": "trace_id", "format": "trace", "link": "trace_url"}
    assert link_target({"trace_url": URL_A}, column) == URL_A
    assert link_target({}, column) is None
    assert link_target({"trace_url": "javascript:alert(1)"}, column) is None
    assert link_target({"trace_url": "http://x/\x1b]8;;"}, column) is None
    assert link_target({"trace_url": URL_A}, {"key": "trace_id", "format": "trace"}) is None


def test_printable_and_truncate() -> None:
    assert printable("a\x1b[31mb") == "a\\x1b[31mb"
    assert truncate("x" * 50) == "x" * 39 + "…"
    assert truncate("short") == "short"


# --- JSON and table ----------------------------------------------------------------------------


def test_render_json_is_the_document(document: dict[str, Any]) -> None:
    text = render_json(document)
    assert text.endswith("}\n")
    assert json.loads(text) == document


def test_table_heading_names_period_window_service_and_source(document: dict[str, Any]) -> None:
    first = render_table(document).splitlines()[0]
    assert "7d" in first
    assert "2026-11-01T00:00:00Z .. 2026-11-08T00:00:00Z" in first
    assert "service checkout" in first
    assert "source rollups" in first


def test_table_shows_formatted_values_sections_in_order_and_notes(document: dict[str, Any]) -> None:
    text = render_table(document)
    for shown in ("12,345", "0.333", "12.35", "99.9%", "97.5%", "+25.0%", "$0.0123", "1h 02m", "7.3", "$150.50"):
        assert shown in text
    assert text.index("Overview") < text.index("LLM") < text.index("By model") < text.index("Per day")
    assert "note: a note with [bold]x[/bold] and <script>alert(1)</script>" in text


def test_table_shows_markup_and_html_literally(document: dict[str, Any]) -> None:
    text = render_table(document, color=True)
    assert MARKUP in text
    assert HOSTILE in text
    assert MATH in text


def test_table_right_aligns_numbers(document: dict[str, Any]) -> None:
    lines = render_table(document).splitlines()
    first = next(line for line in lines if "$150.50" in line)
    second = next(line for line in lines if "$0.1000" in line)
    assert first.index("$150.50") + len("$150.50") == second.index("$0.1000") + len("$0.1000")


def test_plain_table_has_no_trailing_blanks_and_does_not_wrap(document: dict[str, Any]) -> None:
    document["sections"]["llm"]["tables"]["by_model"]["rows"][0]["model"] = "m" * 300
    text = render_table(document)
    assert "\x1b" not in text
    assert all(line == line.rstrip() for line in text.splitlines())
    assert any("m" * 300 in line and "$150.50" in line for line in text.splitlines())


def test_table_width_is_honoured(document: dict[str, Any]) -> None:
    assert max(len(line) for line in render_table(document, width=60).splitlines()) <= 60


def test_empty_table_is_one_line(document: dict[str, Any]) -> None:
    assert "Failures: none" in render_table(document).splitlines()


def test_trace_links_only_with_color_and_a_url(document: dict[str, Any]) -> None:
    colored = render_table(document, color=True)
    links = re.findall(r"\x1b\]8;[^;]*;([^\x1b]+)\x1b\\", colored)
    assert links and set(links) == {URL_A}
    plain = render_table(document)
    assert URL_A not in plain
    assert TRACE_A in plain and TRACE_B in plain


def test_table_escapes_control_characters(document: dict[str, Any]) -> None:
    document["sections"]["llm"]["tables"]["by_model"]["rows"][1]["model"] = "evil\x1b[2Jname"
    text = render_table(document)
    assert "\x1b" not in text
    assert "evil\\x1b[2Jname" in text


# --- CSV ---------------------------------------------------------------------------------------


def _encoded(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def _expected_lines(document: dict[str, Any]) -> list[list[str]]:
    lines = []
    for name, section in document["sections"].items():
        keys = [field["key"] for field in section["fields"]]
        keys += [key for key in section["values"] if key not in keys]
        lines += [[name, "values", "0", key, _encoded(section["values"].get(key))] for key in keys]
        for table_name, table in section["tables"].items():
            for index, row in enumerate(table["rows"]):
                keys = [column["key"] for column in table["columns"]]
                keys += [key for key in row if key not in keys]
                lines += [[name, table_name, str(index), key, _encoded(row.get(key))] for key in keys]
    return lines


def test_csv_is_one_long_form_document_with_every_raw_value(document: dict[str, Any]) -> None:
    text = render_csv(document)
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[0] == ["section", "table", "row", "column", "value"]
    assert parsed[1:] == _expected_lines(document)
    assert sum(1 for line in parsed if line[0] == "section") == 1


def test_csv_round_trips_hostile_strings_and_full_precision(document: dict[str, Any]) -> None:
    parsed = {(s, t, r, c): v for s, t, r, c, v in csv.reader(io.StringIO(render_csv(document)))}
    assert parsed[("llm", "by_model", "0", "model")] == HOSTILE
    assert parsed[("llm", "by_model", "1", "model")] == QUOTED
    assert parsed[("llm", "by_model", "2", "model")] == f"{UNICODE} {MATH} {MARKUP}"
    assert float(parsed[("overview", "values", "0", "ratio")]) == 1 / 3
    assert parsed[("overview", "values", "0", "spans")] == "12345"
    assert parsed[("overview", "values", "0", "trend")] == ""
    assert parsed[("overview", "values", "0", "sampled")] == "true"
    assert parsed[("llm", "by_model", "0", "trace_url")] == URL_A
    assert parsed[("llm", "by_model", "2", "extra")] == "false"
    assert ("llm", "by_model", "1", "trace_url") not in parsed


def test_csv_lists_a_rows_columns_in_order_then_its_extra_keys(document: dict[str, Any]) -> None:
    parsed = list(csv.reader(io.StringIO(render_csv(document))))
    columns = [line[3] for line in parsed if line[1] == "by_model" and line[2] == "0"]
    assert columns == ["model", "calls", "cost_usd", "trace_id", "trace_url"]


# --- HTML --------------------------------------------------------------------------------------


@pytest.fixture
def html(document: dict[str, Any]) -> str:
    return render_html(document)


def _svgs(html: str) -> list[str]:
    return re.findall(r"<svg\b.*?</svg>", html, flags=re.S)


def test_html_never_contains_user_markup_unescaped(html: str) -> None:
    assert HOSTILE not in html
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert all(HOSTILE not in svg for svg in _svgs(html))
    assert MARKUP in html


def test_html_draws_one_inline_svg_per_chart(html: str) -> None:
    svgs = _svgs(html)
    assert len(svgs) == html.count("<svg") == 4
    assert "Cost per day" in svgs[0] and "2026-11-03" in svgs[0]
    assert "Calls by model" in svgs[1] and "&lt;script&gt;" in svgs[1]
    assert "Cost by model" in svgs[2] and QUOTED in svgs[2]
    assert "Latency buckets" in svgs[3] and "10-100ms" in svgs[3]


def test_html_chart_labels_are_never_mathtext(html: str) -> None:
    texts = re.findall(r"<text\b[^>]*>([^<]*)</text>", _svgs(html)[1])
    assert any(MATH in text for text in texts)


def test_html_is_self_contained(html: str) -> None:
    lowered = html.lower()
    for needle in ("<script src", "<link", "@import", "url(http", "<img", "src="):
        assert needle not in lowered
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", html))
    assert urls == {URL_A} | SVG_NAMESPACES


def test_html_links_traces_that_have_a_url(html: str) -> None:
    assert html.count('<a href="http') == 1
    assert f'<a href="{URL_A}"' in html
    assert f"<code>{TRACE_B}</code>" in html


def test_html_drops_non_http_trace_links(document: dict[str, Any]) -> None:
    document["sections"]["llm"]["tables"]["by_model"]["rows"][1]["trace_url"] = "javascript:alert(1)"
    html = render_html(document)
    assert "javascript:" not in html
    assert f"<code>{TRACE_B}</code>" in html


def test_html_has_meta_toc_cards_tables_and_notes(html: str) -> None:
    assert "<h1>otelkit report, 7d</h1>" in html
    assert "2026-11-01T00:00:00Z .. 2026-11-08T00:00:00Z" in html
    assert "checkout" in html and "rollups" in html
    assert 'href="#section-overview"' in html and 'id="section-overview"' in html
    assert 'href="#section-llm"' in html and 'id="section-llm"' in html
    assert '<div class="value">12,345</div>' in html
    assert '<div class="value">1h 02m</div>' in html
    assert '<td class="num">$150.50</td>' in html
    assert '<h3>Failures</h3>\n  <p class="empty">None.</p>' in html
    assert "<li>a note with [bold]x[/bold] and &lt;script&gt;alert(1)&lt;/script&gt;</li>" in html


def test_html_is_deterministic(document: dict[str, Any], html: str) -> None:
    assert render_html(document) == html


def test_html_without_matplotlib_says_how_to_install(document: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(RuntimeError, match=r"^the HTML report needs matplotlib: pip install 'otelkit\[html\]'$"):
        render_html(document)


def test_bar_charts_keep_25_categories_with_short_labels() -> None:
    table = {
        "columns": [{"key": "name", "label": "Name", "format": "text"}, {"key": "n", "label": "N", "format": "int"}],
        "rows": [{"name": f"operation-{index}-" + "x" * 60, "n": index} for index in range(30)],
    }
    data = chart_data({"title": "t", "kind": "bar", "x": "name", "y": ["n"]}, table)
    assert len(data.categories) == 25
    assert all(len(label) == 40 and label.endswith("…") for label in data.categories)
    line = chart_data({"title": "t", "kind": "line", "x": "name", "y": ["n"]}, table)
    assert len(line.categories) == 30


def test_truncated_chart_says_so(document: dict[str, Any]) -> None:
    rows = [{"bucket": f"b{index}", "count": index} for index in range(30)]
    document["sections"]["llm"]["tables"]["latency"]["rows"] = rows
    assert "first 25 of 30 rows" in render_html(document)


def test_template_ships_with_the_package() -> None:
    assert (resources.files("otelkit.report") / "templates" / "report.html.j2").is_file()


def test_values_no_field_describes_stay_out_of_table_and_html(document: dict[str, Any]) -> None:
    section = next(iter(document["sections"].values()))
    section["values"]["undescribed_marker_value"] = "zz-only-in-json-zz"
    assert "zz-only-in-json-zz" not in render_table(document)
    assert "zz-only-in-json-zz" not in render_html(document)
    assert "zz-only-in-json-zz" in render_csv(document)
