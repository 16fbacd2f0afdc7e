"""A cache where each value is made once: the first caller of a key makes it, callers arriving meanwhile
wait for that result instead of making it again, and the last ``kept`` results are kept. The service
renders reports through it (one render per sweep version and reader class, however many ask at once)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class _Flight(Generic[T]):
    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: T | None = None
        self.error: BaseException | None = None


class SingleFlight(Generic[T]):
    def __init__(self, kept: int) -> None:
        self._kept = kept
        self._values: OrderedDict[Hashable, T] = OrderedDict()
        self._flights: dict[Hashable, _Flight[T]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        """The value of ``key``, made by ``make`` unless kept or being made; a failure reaches every
        caller that waited for it and is not kept (the next caller tries again)."""
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.value  # type: ignore[return-value]
        try:
            flight.value = make()
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._flights[key]
                if flight.error is None:
                    self._values[key] = flight.value  # type: ignore[assignment]
                    while len(self._values) > self._kept:
                        self._values.popitem(last=False)
            flight.done.set()
        return flight.value
