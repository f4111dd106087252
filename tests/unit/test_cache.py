"""The project's one bounded cache (:class:`praxis.bus.cache.Bounded`)."""

from __future__ import annotations

from praxis.bus.cache import Bounded


def test_it_forgets_the_least_recently_put_beyond_its_size() -> None:
    cache = Bounded[str, int](2)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("a", 3)  # a is now the newest
    cache.put("c", 4)
    assert (cache.get("a"), cache.get("b"), cache.get("c"), len(cache)) == (3, None, 4, 2)
    assert cache.pop("a") == 3 and "a" not in cache and cache.pop("a") is None


def test_entries_expire_after_their_time_to_live() -> None:
    now = [0.0]
    cache = Bounded[str, str | None](10, ttl=5.0, clock=lambda: now[0])
    cache.put("k", None)  # a stored None is an entry, not a miss
    assert "k" in cache
    now[0] = 4.9
    assert "k" in cache
    now[0] = 5.0
    assert "k" not in cache and cache.get("k") is None
    assert len(cache) == 0  # the expired entry went with the read


def test_size_zero_keeps_nothing() -> None:
    cache = Bounded[str, int](0)
    cache.put("a", 1)
    assert cache.get("a") is None and len(cache) == 0
