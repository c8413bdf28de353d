"""The conformance suite runs on both storage engines (rows, head) on both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from rtpm.settings import Settings
from rtpm.storage.base import Storage


@pytest.fixture(params=["rows", "head"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def storage(backend_settings: Settings, engine: str) -> AsyncIterator[Storage]:
    from rtpm.app.storage import make_storage

    s = make_storage(backend_settings.model_copy(update={"storage_engine": engine}))
    await s.open()
    try:
        yield s
    finally:
        await s.close()
