"""vize.services.modelcache: the per-model LRU behind the head and calibration caches."""

from __future__ import annotations

from collections.abc import Callable

from vize.services.modelcache import ModelCache


def test_loads_once_keeps_none_and_evicts_the_least_recently_used() -> None:
    loads: list[str] = []

    def loader(model_id: str, value: str | None) -> Callable[[], str | None]:
        def load() -> str | None:
            loads.append(model_id)
            return value

        return load

    cache: ModelCache[str | None] = ModelCache(2)
    assert cache.get("a", loader("a", "head a")) == "head a"
    assert cache.get("b", loader("b", None)) is None  # a model without a calibration
    assert cache.get("a", loader("a", "other")) == "head a"  # cached: not loaded again
    assert cache.get("b", loader("b", "other")) is None  # None is cached too
    assert loads == ["a", "b"]
    cache.get("c", loader("c", "head c"))  # evicts "a", the least recently used
    assert cache.get("b", loader("b", "x")) is None
    assert cache.get("a", loader("a", "reloaded")) == "reloaded"
    assert loads == ["a", "b", "c", "a"]
