"""Dependencies every route takes, as Annotated aliases.

They are async because they do no I/O: a plain def would cost a threadpool hop each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from service.domain.segments import SegmentIndex
from service.settings import Settings
from service.storage.base import Store


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling. Access control (keys and roles) will fill this in; until then everyone is
    anonymous. Every router depends on it, so no route can be added without it."""

    role: str = "anonymous"
    key_id: str | None = None


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


async def get_index(request: Request) -> SegmentIndex:
    index: SegmentIndex = request.app.state.index
    return index


async def get_caller(request: Request) -> Caller:
    caller = Caller()
    request.state.caller = caller
    return caller


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
IndexDep = Annotated[SegmentIndex, Depends(get_index)]
CallerDep = Annotated[Caller, Depends(get_caller)]
