"""Sampling: one module for serve and sample-test, so what is tested is what runs.

Two stages decide whether an event is stored: the browser (metrics.js, at its ``sampleRate``) and serve (at
``sample_rate``). The browser declares its rate in each event; serve stores it as ``client_rate`` next to its own
``server_rate``, so a reader weighs each line by 1 / (client_rate x server_rate).

The browser stage (:class:`BrowserSampler`, the rule of metrics_ops/client/metrics.src.js)
- per visitor (its default): metrics.js's visitor id is 32 random hex digits (``crypto.getRandomValues``), so
  its first 8 digits read as a number / 2^32 are uniform in [0, 1); the visitor is kept when that is below the
  rate. A keyed hash would not fit in 1 KiB of script, and is not needed: the id itself is random.
- per event (``sample: "event"``): ``Math.random() < rate``.

The server stage (:class:`Sampler`, serve's ``sample_mode``)
- ``random``: each event is kept with probability ``rate``, independently.
- ``visitor``: an event is kept when ``fraction(visitor_id) < rate``, where ``fraction`` is a keyed BLAKE2b hash
  of the visitor id mapped to [0, 1). A visitor is wholly in or out, so funnels stay unbiased.

How they compose: **independently, client x server**, in either server mode. The server's keyed hash has
nothing to do with the id's leading digits, so the two per-visitor decisions are independent draws (0.25 x 0.5
keeps 12.5 % of visitors), and a visitor both stages decide per visitor is still wholly in or out. (Two stages
hashing the same id the same way would nest to min(c, s), OpenTelemetry's "equalizing" rule; metrics.js does
not, so nothing here assumes it.) sample-test simulates exactly this: browser-made ids through
:class:`BrowserSampler`, then :class:`Sampler`.
Per-event-name rates (METRICS_SAMPLE_RATES) replace the server's default rate for the events they name.
"""

from __future__ import annotations

import math
import random
import re
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


BROWSER_ID = re.compile(r"[0-9a-f]{32}")


def browser_visitor_id(rng: random.Random) -> str:
    """A visitor id as metrics.js makes one: 32 random hex digits."""
    return f"{rng.getrandbits(128):032x}"


def browser_fraction(visitor_id: str) -> float:
    """metrics.js's per-visitor place in [0, 1): the id's first 8 hex digits / 2^32. An id metrics.js did not
    make (not 32 hex digits) has none; metrics.js replaces such an id in localStorage with a new one."""
    if not BROWSER_ID.fullmatch(visitor_id):
        raise ValueError(f"{visitor_id!r} is not a metrics.js visitor id (32 hex digits)")
    return int(visitor_id[:8], 16) / 2**32


class BrowserSampler:
    """The browser stage, as metrics.js decides: per visitor by the id's own digits (default), or per event."""

    def __init__(self, rate: float = 1.0, per_event: bool = False, rng: Callable[[], float] | None = None):
        if not 0 <= rate <= 1:
            raise ValueError("sampling rates must lie between 0 and 1")
        self.rate = rate
        self.per_event = per_event
        self._random = rng or random.random

    def keep_many(self, visitor_ids: Sequence[str]) -> list[bool]:
        """For ids metrics.js made (:func:`browser_fraction` checks one)."""
        return self.keep_places([int(v[:8], 16) for v in visitor_ids])

    def keep_places(self, places: Sequence[int]) -> list[bool]:
        """The same for the ids' places (their first 8 hex digits as a number, 0 <= x < 2^32): x / 2^32 < rate
        is x < rate * 2^32 exactly (a power of two), as metrics.js compares it."""
        if self.rate >= 1.0 or self.rate <= 0.0:
            return [self.rate >= 1.0] * len(places)
        if self.per_event:
            draw, rate = self._random, self.rate
            return [draw() < rate for _ in places]
        bound = self.rate * 4294967296.0
        return [x < bound for x in places]


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


def effective_rate(client: float, server: float) -> float:
    """The share of events that survive the browser stage and the server stage: independent, so the product."""
    return client * server


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
