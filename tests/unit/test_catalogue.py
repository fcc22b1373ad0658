"""The topic catalogue agrees with the registry and keeps the saga's topics co-partitioned."""

from __future__ import annotations

from collections import Counter

import pytest

from schemas.catalogue import (
    DEAD_LETTER_SUFFIX,
    SAGA_PARTITIONS,
    TOPICS,
    all_topic_names,
    topic,
)
from schemas.registry import REGISTRY


def test_every_catalogued_type_is_registered() -> None:
    for t in TOPICS:
        for type_ in t.message_types:
            assert REGISTRY.latest_version(type_) >= 1, type_


def test_every_registered_type_is_on_exactly_one_topic() -> None:
    placed = Counter(type_ for t in TOPICS for type_ in t.message_types)
    registered = {m.TYPE for m in REGISTRY}
    assert registered == set(placed)
    assert {type_ for type_, n in placed.items() if n != 1} == set()


def test_saga_topics_are_co_partitioned_and_keyed_by_order() -> None:
    saga = [t for t in TOPICS if t.saga]
    assert saga
    assert {t.partitions for t in saga} == {SAGA_PARTITIONS}
    assert {t.key for t in saga} == {"order_id"}


def test_every_version_of_every_message_carries_its_record_key() -> None:
    for t in TOPICS:
        for type_ in t.message_types:
            for version in range(1, REGISTRY.latest_version(type_) + 1):
                fields = REGISTRY.model(type_, version).model_fields
                assert t.key_of(type_) in fields, f"{type_} v{version} on {t.name}"


def test_a_key_override_names_one_of_the_topics_messages() -> None:
    for t in TOPICS:
        for type_, _ in t.key_overrides:
            assert type_ in t.message_types
    assert topic("inventory.events").key_of("StockLevelChanged") == "sku"
    assert topic("inventory.events").key_of("StockReserved") == "order_id"


def test_topic_names_are_unique_and_each_has_a_dead_letter_topic() -> None:
    names = all_topic_names()
    assert len(names) == len(set(names)) == 2 * len(TOPICS)
    for t in TOPICS:
        assert t.dead_letter == t.name + DEAD_LETTER_SUFFIX == f"{t.name}.dlq"
        assert t.dead_letter in names
    assert topic("checkout.events").dead_letter == "checkout.events.dlq"


def test_topic_looks_up_by_name_and_names_an_unknown_one() -> None:
    assert topic("payments.events").message_types == (
        "PaymentAuthorized",
        "PaymentDeclined",
        "PaymentVoided",
    )
    with pytest.raises(KeyError, match=r"no\.such\.topic"):
        topic("no.such.topic")
