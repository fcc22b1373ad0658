"""(type, version) → pydantic model, and upcaster chains from every old version to the newest.

Rules (DESIGN §3): a published version is never edited; a breaking change adds a module with the
new version and an upcaster `dict -> dict` from the previous one. Consumers accept every version
with a chain to the newest; producers write the newest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]


class Message(BaseModel):
    """Base of every payload model: small, frozen, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    TYPE: ClassVar[str]
    VERSION: ClassVar[int]


class UnknownMessageError(LookupError):
    """A (type, version) with no model, or no upcaster chain to the newest version."""


M = TypeVar("M", bound=type[Message])


class Registry:
    def __init__(self) -> None:
        self._models: dict[tuple[str, int], type[Message]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        self._types: set[str] = set()

    def register(self, model: M) -> M:
        """Class decorator: make `model` known under its TYPE and VERSION."""
        key = (model.TYPE, model.VERSION)
        if key in self._models and self._models[key] is not model:
            raise ValueError(f"{model.TYPE} v{model.VERSION} is registered twice")
        self._models[key] = model
        self._types.add(model.TYPE)
        return model

    def upcaster(self, type_: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Decorator: `fn(payload of from_version) -> payload of from_version + 1`."""

        def add(fn: Upcaster) -> Upcaster:
            self._upcasters[(type_, from_version)] = fn
            return fn

        return add

    def knows(self, type_: str) -> bool:
        """Whether any version of `type_` is registered."""
        return type_ in self._types

    def latest_version(self, type_: str) -> int:
        versions = [v for (t, v) in self._models if t == type_]
        if not versions:
            raise UnknownMessageError(f"unknown message type {type_!r}")
        return max(versions)

    def model(self, type_: str, version: int) -> type[Message]:
        try:
            return self._models[(type_, version)]
        except KeyError:
            raise UnknownMessageError(f"unknown version {version} of {type_!r}") from None

    def upcast(self, type_: str, version: int, payload: Mapping[str, Any]) -> tuple[int, Payload]:
        """Walk the chain from `version` to the newest; return (newest version, payload)."""
        latest = self.latest_version(type_)
        if version > latest or version < 1:
            raise UnknownMessageError(f"unknown version {version} of {type_!r}")
        current = dict(payload)
        for v in range(version, latest):
            step = self._upcasters.get((type_, v))
            if step is None:
                raise UnknownMessageError(f"no upcaster for {type_!r} v{v} -> v{v + 1}")
            current = step(current)
        return latest, current

    def decode(self, type_: str, version: int, payload: Mapping[str, Any]) -> Message:
        """Validate against the stated version, upcast, validate against the newest.

        Raises UnknownMessageError or pydantic.ValidationError; both mean "dead letter".
        """
        stated = self.model(type_, version).model_validate(payload)
        # Upcast what the old model made of the payload, not the raw input: validation coerces
        # (e.g. "150" -> 150), and an upcaster doing arithmetic on raw strings would be wrong.
        latest, upcasted = self.upcast(type_, version, stated.model_dump(mode="json"))
        return self.model(type_, latest).model_validate(upcasted)

    def encode(self, message: Message) -> tuple[str, int, Payload]:
        """(type, version, JSON-ready payload) of a message; it must be a registered newest."""
        if self.latest_version(message.TYPE) != message.VERSION:
            raise ValueError(f"producers write the newest version of {message.TYPE}")
        return message.TYPE, message.VERSION, message.model_dump(mode="json")

    def __iter__(self) -> Iterator[type[Message]]:
        return iter(sorted(self._models.values(), key=lambda m: (m.TYPE, m.VERSION)))


REGISTRY = Registry()
