"""Fakes shared by the pure steering tests."""

from __future__ import annotations


class FakeClock:
    """A clock the test moves by hand: ``clock.now = 12.0``; calling it returns ``now``."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
