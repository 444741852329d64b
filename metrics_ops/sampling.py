"""Sampling: one module for serve and sample-test, so what is tested is what runs.

Modes
- ``random``: each event is kept with probability ``rate``, independently. A client stage at ``c`` and a
  server stage at ``s`` compose to ``c * s`` (the existing system's behaviour).
- ``visitor``: an event is kept when ``fraction(visitor_id) < rate``, where ``fraction`` is a keyed BLAKE2b hash
  of the visitor id mapped to [0, 1). A visitor is wholly in or out, so funnels stay unbiased. When the
  client stage hashes the same id the same way (same key), the stages nest: everyone the smaller rate keeps,
  the larger keeps too, so they compose to ``min(c, s)`` (OpenTelemetry's "equalizing" rule); with
  independent hashes they would compose to ``c * s``.
Per-event-name rates (METRICS_SAMPLE_RATES) replace the default rate for the events they name.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from hashlib import blake2b as _blake2b

MODES = ("random", "visitor")
_SCALE = float(1 << 64)
Z999 = 3.2905  # two-sided 99.9 %


def visitor_hash(visitor_id: str, key: bytes = b"") -> int:
    """A stable 64-bit number for a visitor id (keyed BLAKE2b; Python's hash() is salted per process)."""
    return int.from_bytes(_blake2b(visitor_id.encode("utf-8"), key=key[:64], digest_size=8).digest(), "big")


def visitor_fraction(visitor_id: str, key: bytes = b"") -> float:
    """The visitor's place in [0, 1): kept at rate r when it is below r."""
    return visitor_hash(visitor_id, key) / _SCALE


def _threshold(rate: float) -> int:
    return min(1 << 64, int(rate * _SCALE))


class Sampler:
    """Decides whether an event is kept. ``keep`` is serve's hot path; ``keep_many`` the same rule for many."""

    def __init__(self, rate: float = 1.0, mode: str = "random", rates: Mapping[str, float] | None = None,
                 key: bytes | str = b"", rng: Callable[[], float] | None = None):
        if mode not in MODES:
            raise ValueError(f"unknown sampling mode {mode!r} (want one of {', '.join(MODES)})")
        if not 0 <= rate <= 1 or any(not 0 <= r <= 1 for r in (rates or {}).values()):
            raise ValueError("sampling rates must lie between 0 and 1")
        self.rate = rate
        self.mode = mode
        self.rates = dict(rates or {})
        self.key = (key.encode() if isinstance(key, str) else key)[:64]
        self._random = rng or random.random
        self._threshold = _threshold(rate)
        self._thresholds = {name: _threshold(r) for name, r in self.rates.items()}

    @classmethod
    def from_settings(cls, settings, rng: Callable[[], float] | None = None) -> Sampler:
        return cls(settings.sample_rate, settings.sample_mode, settings.sample_rates, settings.sample_key, rng)

    def rate_for(self, event: str) -> float:
        return self.rates.get(event, self.rate) if self.rates else self.rate

    def keep(self, visitor_id: str, event: str) -> bool:
        rate = self.rates.get(event, self.rate) if self.rates else self.rate
        if rate >= 1.0:
            return True
        if rate <= 0.0:
            return False
        if self.mode == "random":
            return self._random() < rate
        threshold = self._thresholds.get(event, self._threshold) if self.rates else self._threshold
        return int.from_bytes(_blake2b(visitor_id.encode("utf-8"), key=self.key, digest_size=8).digest(),
                              "big") < threshold

    def keep_many(self, visitor_ids: Sequence[str], event: str) -> list[bool]:
        """``keep`` for many events of one name, without a call per event (simulations, batches)."""
        rate = self.rate_for(event)
        if rate >= 1.0:
            return [True] * len(visitor_ids)
        if rate <= 0.0:
            return [False] * len(visitor_ids)
        if self.mode == "random":
            draw = self._random
            return [draw() < rate for _ in visitor_ids]
        threshold, key, from_bytes = _threshold(rate), self.key, int.from_bytes
        return [from_bytes(_blake2b(v.encode("utf-8"), key=key, digest_size=8).digest(), "big") < threshold
                for v in visitor_ids]


def effective_rate(client: float, server: float, mode: str) -> float:
    """The share of events that survive a client stage and a server stage."""
    return min(client, server) if mode == "visitor" else client * server


def wilson_interval(kept: int, n: int, z: float = Z999) -> tuple[float, float]:
    """Wilson score interval of a proportion (default: 99.9 %, two-sided)."""
    if n <= 0:
        return 0.0, 1.0
    p = kept / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def events_to_decide(rate: float, tolerance: float, z: float = Z999) -> int:
    """Events needed for a Wilson half-width of about ``tolerance`` at ``rate``: z^2 p (1-p) / d^2."""
    if tolerance <= 0:
        raise ValueError("tolerance must be positive")
    return math.ceil(z * z * rate * (1 - rate) / (tolerance * tolerance))
