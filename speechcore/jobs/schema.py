"""The files a queued job keeps its order and lines in, as a versioned schema of their own: a job
written by one version of the server resumes on the next, whatever the pipeline's dataclasses are
called by then. A change of these models is a new version with an upgrade from the one before
(`_UPGRADES`); readers accept every version ever written."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..orders import Line, Narration, Role, SpeechOrder

VERSION = 1
S = TypeVar("S", bound="_Stored")


class UnreadableJobFile(ValueError):
    """A job's order or lines are not in any version of the schema (the job fails with this)."""


class _Stored(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoredRole(_Stored):
    voice: str
    rvc_voice: str = "Disabled"
    rvc_pitch: float = 0.0


class StoredNarration(_Stored):
    mode: str
    narrator: StoredRole
    text_not_inside: str


class StoredOrder(_Stored):
    version: Literal[1] = Field(1, description="The schema version this file was written in.")
    text: str
    character: StoredRole
    language: str = "auto"
    engine: str | None = None
    filtering: str = "none"
    narration: StoredNarration | None = None
    speed: float | None = None
    temperature: float | None = None
    repetition_penalty: float | None = None
    pitch: float | None = None
    max_characters: int | None = None
    streaming: bool = False
    text_field: str = "text"


class StoredLine(_Stored):
    role: str
    text: str
    language: str
    chapter: str | None = None


class StoredLines(_Stored):
    version: Literal[1] = 1
    lines: list[StoredLine]


def order_to_json(order: SpeechOrder) -> dict[str, Any]:
    """The order as the current version stores it. A field the order has and this version lacks
    (one renamed in the dataclass, say) fails here, where a test writes one, not when a queued job
    is read back; reading the dataclass by the schema's names would store the default instead."""
    return _write(StoredOrder, dataclasses.asdict(order))


def order_from_json(data: object) -> SpeechOrder:
    """The order of a job file of any version; the place where a stored field meets a renamed one."""
    stored = _read(StoredOrder, data)
    narration = None if stored.narration is None else Narration(
        mode=stored.narration.mode, narrator=Role(**stored.narration.narrator.model_dump()),
        text_not_inside=stored.narration.text_not_inside)
    fields = stored.model_dump(exclude={"version", "character", "narration"})
    return SpeechOrder(**fields, character=Role(**stored.character.model_dump()), narration=narration)


def lines_to_json(lines: list[Line]) -> dict[str, Any]:
    return _write(StoredLines, {"lines": [dataclasses.asdict(line) for line in lines]})


def lines_from_json(data: object) -> list[Line]:
    return [Line(**line.model_dump()) for line in _read(StoredLines, data).lines]


def _unversioned_order(data: dict[str, Any]) -> dict[str, Any]:
    """Files of the first job servers had no version: the order's dataclass as a dict, which is
    version 1 field for field."""
    return {**data, "version": 1}


def _unversioned_lines(data: list[Any]) -> dict[str, Any]:
    """The first job servers wrote the lines as a bare list."""
    return {"version": 1, "lines": data}


_UPGRADES: dict[type[_Stored], dict[object, Callable[[Any], Any]]] = {
    StoredOrder: {None: _unversioned_order},
    StoredLines: {None: _unversioned_lines},
}
"""For each file, how to bring an older version one step up, keyed by the version it upgrades."""


def _write(model: type[S], fields: dict[str, Any]) -> dict[str, Any]:
    return model.model_validate({**fields, "version": VERSION}).model_dump(mode="json")


def _read(model: type[S], data: object) -> S:
    for _ in range(VERSION + 1):
        version = data.get("version") if isinstance(data, dict) else None
        if version == VERSION:
            break
        upgrade = _UPGRADES[model].get(version)
        if upgrade is None:
            raise UnreadableJobFile(f"a job file of version {version!r}; this server reads versions up to {VERSION}")
        data = upgrade(data)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise UnreadableJobFile(f"a job file this server cannot read: {exc}") from None
