"""The projection's pure parts: history cursors, UTC days, the views' DDL and subscription
tables, and its settings. No I/O."""

from __future__ import annotations

import base64
import re
from datetime import UTC, date, datetime, timedelta, timezone

import orjson
import pytest
from pydantic import ValidationError

from schemas.catalogue import topic as catalogue_topic
from services.projection.api import decode_cursor, encode_cursor
from services.projection.consumers import VIEWS
from services.projection.settings import ProjectionSettings
from services.projection.store import SCHEMA, qualified, view_ddl
from services.projection.views import View, utc_day

EAST = timezone(timedelta(hours=2))
WEST = timezone(timedelta(hours=-5))
CREATED = re.compile(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?([\w.]+)", re.IGNORECASE)
INDEXED = re.compile(r"\bON\s+([\w.]+)\s*\(", re.IGNORECASE)


def _raw_cursor(value: object) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode()


# ---- history cursors ----


@pytest.mark.parametrize(
    ("placed_at", "order_id"),
    [
        (datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), "ord-1"),
        (datetime(2024, 2, 29, 23, 59, 59, tzinfo=EAST), "a.b:c_d-9"),
        (datetime(1999, 12, 31, tzinfo=WEST), "x" * 64),
    ],
)
def test_a_cursor_names_the_position_it_was_made_from(placed_at: datetime, order_id: str) -> None:
    cursor = encode_cursor(placed_at, order_id)
    assert re.fullmatch(r"[A-Za-z0-9_=-]+", cursor), "a cursor goes into a URL unescaped"
    when, decoded_id = decode_cursor(cursor)
    assert (when, decoded_id) == (placed_at, order_id)  # the same instant
    assert when.utcoffset() == timedelta(0)  # in UTC, as the database compares it


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "garbage",
        "not base64 at all!",
        "é",
        base64.urlsafe_b64encode(b"\xff\xfe not json").decode(),
        _raw_cursor([]),
        _raw_cursor("ab"),  # unpacks into two characters
        _raw_cursor({"a": 1, "b": 2}),  # unpacks into two keys
        _raw_cursor(["2026-01-01T00:00:00+00:00"]),
        _raw_cursor(["2026-01-01T00:00:00+00:00", "ord-1", "extra"]),
        _raw_cursor(["2026-01-01T00:00:00+00:00", 5]),
        _raw_cursor(["2026-01-01T00:00:00+00:00", None]),
        _raw_cursor(["2026-01-01T00:00:00", "ord-1"]),  # no offset: not one we handed out
        _raw_cursor(["yesterday", "ord-1"]),
        _raw_cursor([20260101, "ord-1"]),
        _raw_cursor([None, "ord-1"]),
    ],
)
def test_a_cursor_this_service_did_not_hand_out_is_refused(cursor: str) -> None:
    with pytest.raises(ValueError, match="not a cursor this service handed out"):
        decode_cursor(cursor)


# ---- UTC days ----


@pytest.mark.parametrize(
    ("at", "day"),
    [
        (datetime(2024, 3, 1, 0, 30, tzinfo=EAST), date(2024, 2, 29)),  # east of UTC: day before
        (datetime(2024, 2, 29, 22, 0, tzinfo=WEST), date(2024, 3, 1)),  # west of UTC: day after
        (datetime(2024, 12, 31, 23, 59, tzinfo=WEST), date(2025, 1, 1)),
        (datetime(2024, 3, 1, 12, 0, tzinfo=EAST), date(2024, 3, 1)),
        (datetime(2024, 3, 1, 0, 0, tzinfo=UTC), date(2024, 3, 1)),
        (datetime(2024, 3, 1, 23, 59, 59, tzinfo=UTC), date(2024, 3, 1)),
    ],
)
def test_utc_day_of_an_aware_time_is_its_day_in_utc(at: datetime, day: date) -> None:
    assert utc_day(at) == day


@pytest.mark.parametrize(
    "at", [datetime(2024, 3, 1, 0, 30), datetime(2024, 2, 29, 23, 59, 59), datetime(2024, 3, 1)]
)
def test_utc_day_takes_a_naive_time_as_utc(at: datetime) -> None:
    assert utc_day(at) == at.date() == utc_day(at.replace(tzinfo=UTC))


# ---- the views' DDL and subscription tables ----


def _tables(ddl: str) -> list[str]:
    return CREATED.findall(ddl)


def _columns(ddl: str, table: str) -> set[str]:
    """The column names of `table`'s CREATE TABLE in `ddl` (first word of each line)."""
    match = re.search(
        rf"CREATE TABLE IF NOT EXISTS {re.escape(table)} \((.*?)\n\);", ddl, re.DOTALL
    )
    assert match, f"no CREATE TABLE for {table}"
    words = (line.split()[0] for line in match.group(1).splitlines() if line.strip())
    return {w for w in words if w.isidentifier() and w.upper() not in {"PRIMARY", "CHECK"}}


def test_qualified_fills_in_the_schema_everywhere_and_keeps_the_text_stable() -> None:
    template = "SELECT * FROM {s}.a JOIN {s}.b USING (id) WHERE {s}.a.x = $1"
    sql = qualified(template, "view_x")
    assert sql == "SELECT * FROM view_x.a JOIN view_x.b USING (id) WHERE view_x.a.x = $1"
    # the same text object each time: asyncpg's prepared-statement cache keys on it
    assert qualified(template, "view_x") is sql
    assert qualified(template, "view_y") == sql.replace("view_x", "view_y")


@pytest.mark.parametrize("view", list(VIEWS.values()), ids=list(VIEWS))
@pytest.mark.parametrize("schema", ["view_probe", "view_probe__shadow"])
def test_every_table_of_a_view_lives_in_the_schema_it_is_built_in(view: View, schema: str) -> None:
    ddl = view.ddl(schema)
    assert ddl == view_ddl(view.tables, schema)
    assert "{s}" not in ddl
    assert f"CREATE SCHEMA IF NOT EXISTS {schema};" in ddl
    tables = _tables(ddl)
    assert tables, "a view has tables"
    unqualified = [t for t in tables if not t.startswith(f"{schema}.")]
    assert unqualified == [], "a table outside the view's schema would survive its rebuild"
    assert f"{schema}.inbox" in tables, "the inbox is swapped with the rows it accounts for"
    indexed = INDEXED.findall(ddl)
    assert all(t.startswith(f"{schema}.") for t in indexed), indexed


@pytest.mark.parametrize("view", list(VIEWS.values()), ids=list(VIEWS))
def test_every_table_a_view_dumps_is_in_its_ddl_and_every_table_is_dumped(view: View) -> None:
    ddl = view.ddl("s1")
    made = {t.removeprefix("s1.") for t in _tables(ddl)} - {"inbox"}
    dumped = [table for table, _ in view.rows]
    assert len(dumped) == len(set(dumped))
    assert set(dumped) == made
    for table, order_by in view.rows:
        columns = _columns(ddl, f"s1.{table}")
        ordering = [c.strip() for c in order_by.split(",")]
        assert set(ordering) <= columns, f"{table} is ordered by columns it lacks"


@pytest.mark.parametrize("view", list(VIEWS.values()), ids=list(VIEWS))
def test_a_view_subscribes_only_to_the_topics_it_lists(view: View) -> None:
    prefix = "p123."
    subscriptions = view.subscriptions(lambda name: prefix + name)
    assert subscriptions
    listed = {prefix + t for t in view.topics}
    used = {s.topic for s in subscriptions}
    # the rebuild replays `topics`; a subscription outside them would be missed by it
    assert used <= listed, used - listed
    for s in subscriptions:
        entry = catalogue_topic(s.topic.removeprefix(prefix))
        assert s.message.TYPE in entry.message_types, f"{s.message.TYPE} is not on {s.topic}"


def test_the_views_have_distinct_names_and_schemas() -> None:
    assert list(VIEWS) == [v.name for v in VIEWS.values()]
    assert len({v.schema for v in VIEWS.values()}) == len(VIEWS)
    assert {v.consumer_name("projection") for v in VIEWS.values()} == {
        f"projection.{name}" for name in VIEWS
    }
    assert "CREATE TABLE IF NOT EXISTS rebuilds" in SCHEMA


# ---- settings ----


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "LEADLINE_TOPIC_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    for field in ProjectionSettings.model_fields:
        monkeypatch.delenv(f"PROJECTION_{field.upper()}", raising=False)


@pytest.mark.usefixtures("clean_env")
def test_projection_settings_defaults() -> None:
    settings = ProjectionSettings()
    assert settings.service_name == "projection"
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 8003)
    assert settings.consumer_group == "projection"
    assert settings.read_wait_seconds == 5.0
    assert settings.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert settings.topic("checkout.events") == "checkout.events"
    assert settings.database_url.endswith("/projection")


@pytest.mark.usefixtures("clean_env")
def test_projection_settings_read_their_prefixed_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PROJECTION_HTTP_PORT", "9103")
    monkeypatch.setenv("PROJECTION_READ_WAIT_SECONDS", "0.5")
    monkeypatch.setenv("LEADLINE_TOPIC_PREFIX", "t1.")
    settings = ProjectionSettings()
    assert (settings.http_port, settings.read_wait_seconds) == (9103, 0.5)
    assert settings.topic("checkout.events") == "t1.checkout.events"


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("http_port", 0),
        ("http_port", 65536),
        ("read_wait_seconds", 0),
        ("read_wait_seconds", 61),
        ("transaction_batch", 0),
        ("ready_max_lag", -1),
        ("consumer_group", ""),
        ("max_body_bytes", 10),
        ("no_such_setting", 1),
    ],
)
def test_projection_settings_refuse_a_bad_value(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as refused:
        ProjectionSettings(**{field: value})
    assert field in str(refused.value)


@pytest.mark.usefixtures("clean_env")
def test_a_bad_value_in_the_environment_is_refused_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROJECTION_HTTP_PORT", "not-a-port")
    with pytest.raises(ValidationError, match="http_port"):
        ProjectionSettings()
