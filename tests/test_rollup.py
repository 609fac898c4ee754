"""Rollups: kept by the writer in the batch's transaction, exact for sums at every resolution,
deduplicated with the spans, built for old stores on upgrade; windows covered by buckets."""

from __future__ import annotations

import json
import math
import random
import sqlite3
import statistics
import threading
from pathlib import Path
from typing import Any

import pytest

from otelkit import semconv as sc
from otelkit.report.source import Source, cover
from otelkit.store import StoreWriter, connect_for_reading
from otelkit.store.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from otelkit.store.rollup import (
    HISTOGRAM_ACCURACY,
    RESOLUTIONS,
    bin_value_ns,
    histogram_bin,
    histogram_percentile_ms,
    message_template,
)
from otelkit.store.writer import SPAN_COLUMNS

MINUTE = 60 * 10**9
HOUR = 60 * MINUTE
DAY = 24 * HOUR
BASE = 1_790_000_000 * 10**9 - 17 * MINUTE - 123_456_789  # not aligned to anything


def row(i: int, start: int, duration: int, *, name: str = "op", attrs: dict[str, Any] | None = None,
        status: str = "UNSET", parent: bool = False, trace: int | None = None, message: str | None = None,
        service: str = "svc") -> tuple[Any, ...]:  # fmt: skip
    values: dict[str, Any] = dict.fromkeys(SPAN_COLUMNS)
    values.update(
        trace_id=f"{trace if trace is not None else i:032x}", span_id=f"{i:016x}",
        parent_span_id=f"{i + 1:016x}" if parent else None, name=name, kind="INTERNAL", service_name=service,
        start_ns=start, end_ns=start + duration, status_code=status, status_message=message,
        attributes=json.dumps(attrs or {}),
    )  # fmt: skip
    return tuple(values[c] for c in SPAN_COLUMNS)


def rollup_totals(db: Path, resolution: int) -> tuple[float, ...]:
    conn = sqlite3.connect(db)
    return conn.execute(
        "SELECT sum(spans), sum(weight), sum(errors), sum(roots), sum(duration_ns), sum(input_tokens), sum(cost_usd), "
        "max(max_ns) FROM rollups WHERE resolution_s = ?",
        (resolution,),
    ).fetchone()


def test_histogram_bins_read_back_within_the_stated_accuracy() -> None:
    rng = random.Random(7)
    for _ in range(20_000):
        duration = rng.lognormvariate(14, 4)
        value = bin_value_ns(histogram_bin(duration))
        assert abs(value - duration) <= HISTOGRAM_ACCURACY * duration * (1 + 1e-9)
    assert bin_value_ns(histogram_bin(0)) == 0 and bin_value_ns(histogram_bin(-5)) == 0


def test_histogram_percentiles_are_within_one_percent_of_the_ranked_duration() -> None:
    rng = random.Random(3)
    durations = sorted(int(rng.lognormvariate(15, 1.5)) for _ in range(5000))
    histogram: dict[int, float] = {}
    for d in durations:
        histogram[histogram_bin(d)] = histogram.get(histogram_bin(d), 0.0) + 1
    for p in (1, 50, 95, 99, 100):
        ranked = durations[math.floor((len(durations) - 1) * p / 100)] / 1e6
        assert histogram_percentile_ms(histogram, p) == pytest.approx(ranked, rel=HISTOGRAM_ACCURACY)
    assert histogram_percentile_ms({}, 50) is None


@pytest.mark.parametrize(
    ("message", "template"),
    [
        ("run_tests failed after 3 retries in 12.5s", "run_tests failed after <n> retries in <n>s"),
        ("connect to 10.0.0.12:5432 refused", "connect to <ip> refused"),
        ("no row 'user-42' in table", "no row <str> in table"),
        ("job 3f2a9c1e-0b7d-4e8f-9a6b-1c2d3e4f5a6b lost", "job <uuid> lost"),
        ("bad pointer 0xdeadbeef", "bad pointer <hex>"),
        ("commit a3f9e2c1d0 not found", "commit <hex> not found"),
        (None, ""),
    ],
)
def test_error_messages_become_templates(message: str | None, template: str) -> None:
    assert message_template(message) == template


def test_writer_keeps_rollups_equal_to_the_spans_at_every_resolution(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    writer = StoreWriter(str(db))
    rng = random.Random(1)
    rows = []
    for i in range(3000):
        attrs = {sc.OPERATION_TYPE: "llm", sc.GEN_AI_USAGE_INPUT_TOKENS: i % 50, sc.GEN_AI_USAGE_COST: 0.001,
                 sc.SAMPLE_RATE: 4 if i % 5 == 0 else 1}  # fmt: skip
        rows.append(
            row(i + 1, BASE + rng.randrange(3 * DAY), rng.randrange(1, 10**9), attrs=attrs,
                status="ERROR" if i % 7 == 0 else "UNSET", parent=i % 3 == 0)  # fmt: skip
        )
    for start in range(0, len(rows), 700):
        writer.write_spans(rows[start : start + 700])
    weights = [4 if i % 5 == 0 else 1 for i in range(3000)]
    expected = (
        3000,
        sum(weights),
        sum(w for i, w in enumerate(weights) if i % 7 == 0),
        sum(w for i, w in enumerate(weights) if i % 3 != 0),
        sum(w * (r[9] - r[8]) for w, r in zip(weights, rows)),
        sum(w * (i % 50) for i, w in enumerate(weights)),
        sum(w * 0.001 for w in weights),
        max(r[9] - r[8] for r in rows),
    )
    for resolution in RESOLUTIONS:
        assert rollup_totals(db, resolution) == pytest.approx(expected, rel=1e-12)


def test_redelivered_and_repeated_spans_count_once(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    writer = StoreWriter(str(db))
    batch = [row(i, BASE + i * MINUTE, 1000) for i in range(1, 6)]
    writer.write_spans(batch)
    assert writer.write_spans(batch + [row(9, BASE, 1000), row(9, BASE, 1000)]) == 1
    for resolution in RESOLUTIONS:
        assert rollup_totals(db, resolution)[0] == 6


def test_concurrent_writers_lose_no_rollup_counts(tmp_path: Path) -> None:
    db = tmp_path / "s.db"

    def write(offset: int) -> None:
        writer = StoreWriter(str(db))
        for batch in range(20):
            writer.write_spans([row(offset + batch * 50 + i, BASE + i * 1000, 500, name="op") for i in range(50)])

    threads = [threading.Thread(target=write, args=(n * 100_000,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for resolution in RESOLUTIONS:
        assert rollup_totals(db, resolution)[0] == 3000


def test_sessions_and_tool_sequences_continue_across_batches(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    writer = StoreWriter(str(db))
    tools = ["search", "read", "search", "read", "test"]
    rows = [
        row(i + 1, BASE + i * MINUTE, 1000, name=f"execute_tool {tool}",
            attrs={sc.OPERATION_TYPE: "tool", sc.GEN_AI_TOOL_NAME: tool, sc.SESSION_ID: "s1"},
            status="ERROR" if tool == "test" else "UNSET", trace=100 + i)  # fmt: skip
        for i, tool in enumerate(tools)
    ]
    writer.write_spans(rows[:2])
    writer.write_spans(rows[2:])
    conn = sqlite3.connect(db)
    session = conn.execute("SELECT spans, tool_calls, tool_errors, tools, first_ns, last_ns FROM session_rollups").fetchone()
    assert session[:3] == (5, 5.0, 1.0)
    assert json.loads(session[3]) == {"search": 2.0, "read": 2.0, "test": 1.0}
    assert (session[4], session[5]) == (BASE, BASE + 4 * MINUTE + 1000)
    grams = dict(
        conn.execute("SELECT sequence, sum(weight) FROM tool_ngrams WHERE resolution_s = 3600 GROUP BY sequence")
    )
    assert grams["search > read"] == 2
    assert grams["read > search"] == 1
    assert grams["search > read > search > read > test"] == 1


def test_tool_sequences_do_not_depend_on_write_order(tmp_path: Path) -> None:
    rng = random.Random(11)
    calls = []
    for session in range(6):
        for i in range(12):
            tool = rng.choice(["search", "read", "test", "edit"])
            calls.append((session, i, tool))
    expected: dict[str, int] = {}
    for session in range(6):
        tools = [tool for s, _i, tool in calls if s == session]
        for n in (2, 3, 4, 5):
            for end in range(n - 1, len(tools)):
                gram = " > ".join(tools[end + 1 - n : end + 1])
                expected[gram] = expected.get(gram, 0) + 1
    rows = [
        row(session * 100 + i + 1, BASE + i * MINUTE + session, 1000, name=f"execute_tool {tool}",
            attrs={sc.OPERATION_TYPE: "tool", sc.GEN_AI_TOOL_NAME: tool, sc.SESSION_ID: f"s{session}"},
            trace=session * 100 + i)  # fmt: skip
        for session, i, tool in calls
    ]
    for order in ("forward", "shuffled", "reversed"):
        db = tmp_path / f"{order}.db"
        batch = list(rows) if order == "forward" else rows[::-1] if order == "reversed" else rng.sample(rows, len(rows))
        writer = StoreWriter(str(db))
        for start in range(0, len(batch), 7):
            writer.write_spans(batch[start : start + 7])
        grams = dict(
            sqlite3.connect(db).execute(
                "SELECT sequence, sum(weight) FROM tool_ngrams WHERE resolution_s = 86400 GROUP BY sequence "
                "HAVING sum(weight) > 1e-9"
            )
        )
        assert grams == pytest.approx(expected), order


@pytest.mark.parametrize("seed", range(40))
def test_cover_partitions_any_window_into_aligned_buckets(seed: int) -> None:
    rng = random.Random(seed)
    since = BASE + rng.randrange(-3 * DAY, 3 * DAY)
    until = since + rng.choice([rng.randrange(1, MINUTE), rng.randrange(MINUTE, 3 * HOUR), rng.randrange(HOUR, 9 * DAY)])
    segments = cover(since, until)
    assert segments[0].since_ns == since and segments[-1].until_ns == until
    for left, right in zip(segments, segments[1:]):
        assert left.until_ns == right.since_ns
    for segment in segments:
        step = segment.resolution_s * 10**9
        if segment.resolution_s:
            assert segment.since_ns % step == 0 and segment.until_ns % step == 0
        else:
            assert segment.until_ns - segment.since_ns < MINUTE or segment.since_ns == since
    assert sum(1 for s in segments if s.resolution_s == 0) <= 2


def test_open_windows_need_no_raw_reads() -> None:
    assert [s.resolution_s for s in cover(None, None)] == [86400]
    tail = cover(BASE, None)
    assert tail[0].resolution_s == 0 and tail[-1].resolution_s == 86400 and tail[-1].until_ns == 2**63 - 1


def test_rollup_windows_equal_exact_windows_for_sums(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    writer = StoreWriter(str(db))
    rng = random.Random(5)
    rows = [
        row(i + 1, BASE + rng.randrange(2 * DAY), rng.randrange(1, 10**8),
            attrs={sc.OPERATION_TYPE: rng.choice(["step", "tool", "llm"]), sc.GEN_AI_USAGE_OUTPUT_TOKENS: 3,
                   sc.SAMPLE_RATE: rng.choice([1, 2, 10])},
            status=rng.choice(["UNSET", "ERROR"]), service=rng.choice(["a", "b"]))  # fmt: skip
        for i in range(4000)
    ]
    writer.write_spans(rows)
    conn = connect_for_reading(str(db))
    for service in (None, "a"):
        source = Source(conn, service)
        for _ in range(10):
            since = BASE + rng.randrange(-HOUR, DAY)
            until = since + rng.randrange(MINUTE, 2 * DAY)
            exact, rolled = source.window(since, until, exact=True).total(), source.window(since, until, exact=False).total()
            for name in ("spans", "weight", "errors", "duration_ns", "output_tokens", "max_ns"):
                assert getattr(rolled, name) == pytest.approx(getattr(exact, name), rel=1e-12), name
            expected = [r for r in rows if since <= r[8] < until and (service is None or r[5] == service)]
            assert exact.spans == len(expected)


def old_store(db: Path, version: int, rows: list[tuple[Any, ...]]) -> None:
    """A store as otelkit ``version`` made it (its migrations only), holding ``rows``."""
    conn = sqlite3.connect(db, isolation_level=None)
    for step in range(version):
        for statement in MIGRATIONS[step].split(";"):
            if statement.strip():
                conn.execute(statement)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {version}")
    conn.executemany(f"INSERT INTO spans ({', '.join(SPAN_COLUMNS)}) VALUES ({', '.join('?' * len(SPAN_COLUMNS))})",
                     rows)  # fmt: skip
    conn.close()


def test_upgrading_a_version_2_store_builds_its_rollups(tmp_path: Path) -> None:
    rows = [row(i, BASE + i * HOUR, 5000, attrs={sc.OPERATION_TYPE: "step", sc.SESSION_ID: "s"}) for i in range(1, 30)]
    StoreWriter(str(tmp_path / "new.db")).write_spans(rows)
    old_store(tmp_path / "s.db", 2, rows)
    reader = connect_for_reading(str(tmp_path / "s.db"))
    assert reader.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert rollup_totals(tmp_path / "s.db", 3600) == rollup_totals(tmp_path / "new.db", 3600)
    assert reader.execute("SELECT spans FROM session_rollups").fetchone()[0] == 29


def test_upgrading_a_version_3_store_keeps_every_span_and_derived_column(tmp_path: Path) -> None:
    rows = [row(i, BASE + i * 1000, 5000 + i, attrs={sc.OPERATION_TYPE: "llm", sc.GEN_AI_PROVIDER_NAME: "openai",
                                                     sc.GEN_AI_USAGE_INPUT_TOKENS: i, sc.SESSION_ID: f"s{i % 3}"})
            for i in range(1, 40)]  # fmt: skip
    old_store(tmp_path / "v3.db", 3, rows)
    query = "SELECT * FROM spans ORDER BY id"
    before = sqlite3.connect(tmp_path / "v3.db").execute(query).fetchall()
    reader = connect_for_reading(str(tmp_path / "v3.db"))
    assert reader.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert reader.execute(query).fetchall() == before
    assert reader.execute("SELECT type FROM sqlite_master WHERE name = 'spans'").fetchone()[0] == "view"
    StoreWriter(str(tmp_path / "v3.db")).write_spans([row(100, BASE, 7, attrs={sc.OPERATION_TYPE: "tool"})])
    assert reader.execute("SELECT duration_ns, operation_type FROM spans WHERE id = 40").fetchone() == (7, "tool")


def test_statistics_agree_with_an_independent_variance(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    durations = [1_000_000 * (i % 17 + 1) for i in range(500)]
    StoreWriter(str(db)).write_spans([row(i + 1, BASE + i, d) for i, d in enumerate(durations)])
    total = Source(connect_for_reading(str(db))).window(None, None, exact=False).total()
    mean = total.duration_ns / total.weight / 1e6
    variance = total.duration_sq_ms / total.weight - mean**2
    assert mean == pytest.approx(statistics.fmean(d / 1e6 for d in durations))
    assert variance == pytest.approx(statistics.pvariance([d / 1e6 for d in durations]))
