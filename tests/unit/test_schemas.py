"""Contracts: committed schemas are what the models generate, and every committed version of
every message still decodes and upcasts to the newest (DESIGN §3 "Versions")."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas import generate
from schemas.catalogue import TOPICS
from schemas.checkout import v1 as checkout_v1
from schemas.checkout import v2 as checkout_v2
from schemas.checkout.upcasters import order_placed_v1_to_v2
from schemas.registry import REGISTRY, Message, Registry, UnknownMessageError
from shared import schema_export
from shared.envelope import Envelope

JSON_DIR = generate.SCHEMAS_DIR / "json"
EXAMPLES_DIR = generate.SCHEMAS_DIR / "examples"
VERSIONS = [(m.TYPE, m.VERSION) for m in REGISTRY]
OLD_VERSIONS = [(t, v) for t, v in VERSIONS if v < REGISTRY.latest_version(t)]


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


MAX_CENTS: int = load(JSON_DIR / "OrderPlaced.v2.json")["properties"]["total_cents"]["maximum"]


def committed_schema(type_: str, version: int) -> dict[str, Any]:
    schema: dict[str, Any] = load(JSON_DIR / generate.message_file(type_, version))
    return schema


def example(type_: str, version: int) -> dict[str, Any]:
    payload: dict[str, Any] = load(EXAMPLES_DIR / generate.message_file(type_, version))
    return payload


# --- (a) drift -----------------------------------------------------------------------------


def test_committed_files_are_what_the_models_generate() -> None:
    expected = {**generate.expected_files(), **schema_export.expected_files()}
    drifted = generate.drift(expected)
    assert not drifted, "run `make schemas`:\n" + "\n".join(drifted.values())


def test_check_mode_fails_on_an_edited_schema_and_on_a_deleted_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = ["--root", str(tmp_path)]
    assert generate.main(root) == 0
    assert generate.main(["--check", *root]) == 0

    edited = tmp_path / "json" / "OrderPlaced.v1.json"
    edited.write_text(edited.read_text().replace('"maxItems": 50', '"maxItems": 60'))
    capsys.readouterr()
    assert generate.main(["--check", *root]) == 1
    err = capsys.readouterr().err
    assert str(edited) in err
    assert '-      "maxItems": 60,' in err
    assert '+      "maxItems": 50,' in err

    assert generate.main(root) == 0  # rewrites the edited file
    (tmp_path / "json" / "Ghost.v1.json").write_text("{}\n")
    assert generate.main(root) == 1
    assert "no model for committed schema" in capsys.readouterr().err


# --- (c) every version is committed, none deleted ------------------------------------------


def test_every_registered_version_has_a_committed_schema_and_example() -> None:
    for type_, version in VERSIONS:
        name = generate.message_file(type_, version)
        assert (JSON_DIR / name).is_file(), name
        assert (EXAMPLES_DIR / name).is_file(), name


def test_every_committed_schema_and_example_has_a_registered_model() -> None:
    names = {p.name for p in [*JSON_DIR.glob("*.json"), *EXAMPLES_DIR.glob("*.json")]}
    names.discard(generate.ENVELOPE_FILE)
    assert names, "no committed schemas found"
    for name in sorted(names):
        match = generate.MESSAGE_FILE.match(name)
        assert match, f"unexpected file {name}"
        REGISTRY.model(match["type"], int(match["version"]))  # UnknownMessageError if deleted


# --- (b) committed examples still decode ---------------------------------------------------


@pytest.mark.parametrize(("type_", "version"), VERSIONS)
def test_committed_example_decodes_to_the_newest_version(type_: str, version: int) -> None:
    payload = example(type_, version)
    assert jsonschema_rs.validator_for(committed_schema(type_, version)).is_valid(payload)
    message = REGISTRY.decode(type_, version, payload)
    assert (type_, REGISTRY.latest_version(type_)) == (message.TYPE, message.VERSION)


@pytest.mark.parametrize(("type_", "version"), VERSIONS)
def test_enveloped_example_matches_its_asyncapi_message(type_: str, version: int) -> None:
    document = load(generate.SCHEMAS_DIR / "asyncapi.json")
    message = document["components"]["messages"][f"{type_}.v{version}"]
    model = REGISTRY.model(type_, version)
    record = Envelope(
        event_id=uuid.uuid4(),
        type=type_,
        version=version,
        occurred_at=datetime.now(UTC),
        producer="test",
        key="k-1",
        correlation_id="k-1",
        payload=model.model_validate(example(type_, version)).model_dump(mode="json"),
    )
    # External refs (./json/...) resolve against the committed files on disk.
    base = (generate.SCHEMAS_DIR / "asyncapi.json").as_uri()
    payload_schema = jsonschema_rs.validator_for(message["payload"], base_uri=base)
    assert payload_schema.is_valid(record.model_dump(mode="json"))
    assert not payload_schema.is_valid({**record.model_dump(mode="json"), "version": version + 1})
    assert not payload_schema.is_valid({**record.model_dump(mode="json"), "payload": {}})
    headers = {k: v.decode() for k, v in record.headers()}
    assert jsonschema_rs.validator_for(message["headers"]).is_valid(headers)


def test_asyncapi_has_a_channel_per_topic_with_every_version_it_carries() -> None:
    document = load(generate.SCHEMAS_DIR / "asyncapi.json")
    assert document["asyncapi"].startswith("3.")
    for t in TOPICS:
        channel = document["channels"][t.name]
        assert channel["bindings"]["kafka"]["partitions"] == t.partitions
        expected = {
            f"{type_}.v{v}"
            for type_ in t.message_types
            for v in range(1, REGISTRY.latest_version(type_) + 1)
        }
        assert set(channel["messages"]) == expected
        assert t.dead_letter in document["channels"]


# --- (d) upcasting is total ----------------------------------------------------------------


def from_schema(node: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid under the subset of JSON Schema our models generate; anything else fails
    loudly, so a new construct in a model cannot silently shrink what this test explores."""
    if "$ref" in node:
        return from_schema(defs[node["$ref"].removeprefix("#/$defs/")], defs)
    if "anyOf" in node:
        return st.one_of(*(from_schema(n, defs) for n in node["anyOf"]))
    kind = node.get("type")
    if kind == "object":
        props = node["properties"]
        required = set(node.get("required", ()))
        return st.fixed_dictionaries(
            {k: from_schema(v, defs) for k, v in props.items() if k in required},
            optional={k: from_schema(v, defs) for k, v in props.items() if k not in required},
        )
    if kind == "array":
        return st.lists(
            from_schema(node["items"], defs),
            min_size=node.get("minItems", 0),
            max_size=node.get("maxItems", 10),
        )
    if kind == "integer":
        return st.integers(node.get("minimum"), node.get("maximum"))
    if kind == "string" and node.get("format") == "date-time":
        return st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat)
    if kind == "string":
        low, high = node.get("minLength", 0), node.get("maxLength", 200)
        if "pattern" in node:
            matches = st.from_regex(node["pattern"], fullmatch=True)
            return matches.filter(lambda s: low <= len(s) <= high)
        return st.text(min_size=low, max_size=high)
    if kind == "null":
        return st.none()
    raise NotImplementedError(f"no strategy for schema {node}")


def consistent_order_total(payload: dict[str, Any]) -> dict[str, Any]:
    # v1's model does not tie total_cents to the lines, but every v1 OrderPlaced was priced by
    # checkout, so its total is the sum of its lines (and so is each line, at most, the total).
    total = sum(line["quantity"] * line["unit_price_cents"] for line in payload["lines"])
    assume(total <= MAX_CENTS)
    return {**payload, "total_cents": total}


# What a producer of the old version guaranteed beyond its schema: (type, version) → fix-up.
WRITTEN_IN_THE_WILD = {("OrderPlaced", 1): consistent_order_total}


@pytest.mark.parametrize(("type_", "version"), OLD_VERSIONS)
def test_upcasting_is_total_over_every_old_version(type_: str, version: int) -> None:
    schema = committed_schema(type_, version)
    realistic = WRITTEN_IN_THE_WILD.get((type_, version), lambda p: p)
    payloads = from_schema(schema, schema.get("$defs", {})).map(realistic)

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(payload=payloads)
    def upcasts(payload: dict[str, Any]) -> None:
        REGISTRY.model(type_, version).model_validate(payload)  # the generator makes valid data
        message = REGISTRY.decode(type_, version, payload)
        assert REGISTRY.latest_version(type_) == message.VERSION

    upcasts()


def test_old_versions_exist_so_the_upcasting_property_runs() -> None:
    assert ("OrderPlaced", 1) in OLD_VERSIONS


# --- (e) OrderPlaced v1 → v2 ---------------------------------------------------------------


def test_order_placed_v1_upcasts_with_line_totals_in_eur() -> None:
    v1 = example("OrderPlaced", 1)
    message = REGISTRY.decode("OrderPlaced", 1, v1)
    assert isinstance(message, checkout_v2.OrderPlaced)
    assert message.currency == "EUR"
    assert (message.order_id, message.customer_id) == (v1["order_id"], v1["customer_id"])
    assert message.total_cents == v1["total_cents"] == 3199
    assert [
        (li.sku, li.quantity, li.unit_price_cents, li.line_total_cents) for li in message.lines
    ] == [
        ("TEA-001", 2, 850, 1700),
        ("MUG-CER-BLU", 1, 1499, 1499),
    ]


@given(
    lines=st.lists(
        st.tuples(st.integers(1, 1000), st.integers(0, MAX_CENTS // 1000)), min_size=1, max_size=5
    )
)
def test_order_placed_upcaster_multiplies_each_line(lines: list[tuple[int, int]]) -> None:
    payload = {
        "order_id": "o-1",
        "customer_id": "c-1",
        "lines": [{"sku": "TEA-001", "quantity": q, "unit_price_cents": p} for q, p in lines],
        "total_cents": 0,
    }
    upcast = order_placed_v1_to_v2(payload)
    assert [li["line_total_cents"] for li in upcast["lines"]] == [q * p for q, p in lines]
    assert upcast["currency"] == "EUR"


def test_upcaster_sees_the_validated_payload_not_the_raw_one() -> None:
    # v1 validation coerces "150" to 150; the upcaster must multiply numbers, not repeat text.
    payload = example("OrderPlaced", 1)
    payload["lines"] = [{"sku": "TEA-001", "quantity": 2, "unit_price_cents": "150"}]
    message = REGISTRY.decode("OrderPlaced", 1, payload)
    assert isinstance(message, checkout_v2.OrderPlaced)
    assert message.lines[0].line_total_cents == 300


def test_v1_line_beyond_v2_bounds_is_refused_not_clamped() -> None:
    # Only an inconsistent v1 (line total above its order total) can exceed v2's bound.
    payload = example("OrderPlaced", 1)
    payload["lines"] = [{"sku": "TEA-001", "quantity": 1000, "unit_price_cents": MAX_CENTS}]
    with pytest.raises(ValidationError, match="line_total_cents"):
        REGISTRY.decode("OrderPlaced", 1, payload)


# --- (f) encode and unknown messages -------------------------------------------------------


def test_encode_writes_only_the_newest_version() -> None:
    old = checkout_v1.OrderPlaced.model_validate(example("OrderPlaced", 1))
    with pytest.raises(ValueError, match="newest"):
        REGISTRY.encode(old)
    new = checkout_v2.OrderPlaced.model_validate(example("OrderPlaced", 2))
    assert REGISTRY.encode(new) == ("OrderPlaced", 2, example("OrderPlaced", 2))


@pytest.mark.parametrize(
    ("type_", "version"), [("NoSuchThing", 1), ("OrderPlaced", 3), ("OrderPlaced", 0)]
)
def test_unknown_type_or_version_is_an_unknown_message(type_: str, version: int) -> None:
    with pytest.raises(UnknownMessageError):
        REGISTRY.decode(type_, version, example("OrderPlaced", 2))


def test_a_version_without_an_upcaster_chain_is_an_unknown_message() -> None:
    registry = Registry()

    class Old(Message):
        TYPE = "Thing"
        VERSION = 1
        id: str

    class New(Message):
        TYPE = "Thing"
        VERSION = 2
        id: str
        size: int

    registry.register(Old)
    registry.register(New)
    with pytest.raises(UnknownMessageError, match="no upcaster"):
        registry.decode("Thing", 1, {"id": "a"})
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(type("Old", (Message,), {"TYPE": "Thing", "VERSION": 1}))
