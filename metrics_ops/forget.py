"""Deletion requests: remove visitors' events from every data file, archives and the file being written included.

The rule of what a visitor's line is lives here (the store only filters bytes with a predicate): a line is
removed when its JSON ``visitor_id`` is one of the ids, or starts with one of the prefixes (test traffic of one
``probe`` or ``sample-test`` run shares a prefix). A cheap substring test runs before the JSON parse.

Every file is read under its exclusive lock, in constant memory (twice when it holds lines to remove: to count
them, then to write the filtered copy); serve's writer notices a rewritten file on its next append and
reopens it (see :meth:`metrics_ops.store.Store.append`), so the current file is as safe to rewrite as any other.
A damaged archive is never rewritten: the request names it and says how much of it could be searched.

Derived data: the rollup of every day whose raw data was rewritten is recounted from what is left
(:func:`recount_rollups`), so a report of such a day is the same from its rollup as from its raw lines. A rollup
whose raw data is gone cannot be recounted (it holds no ids, so which of its counts were these visitors' is not
known); what protects it is that it holds nothing that singles anyone out (:mod:`metrics_ops.folding`), and the
result names those days.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from metrics_ops import rollups
from metrics_ops.layout import ROLLUP_DIR, parse_name
from metrics_ops.lines import MAX_LINE_TEXT
from metrics_ops.maintenance import Action, Kind, PassResult, Status, failure_text, run_pass
from metrics_ops.store import FORGET_SUFFIX, Listing, Store, StoreError, UnreadableFile


@dataclass
class ForgetResult(PassResult):
    """A forget's result: its rewrites, and which rollups it recounted and which it could not (raw data gone)."""

    rollups_recounted: list[str] = field(default_factory=list)
    rollups_without_raw: list[str] = field(default_factory=list)
    min_visitors: int = rollups.DEFAULT_MIN_VISITORS
    archive: object | None = None  # metrics_ops.erasure.ArchiveErasure: the bucket's part (archive_url set)

    @property
    def notes(self) -> list[str]:
        notes = []
        if days := self.rollups_without_raw:
            span = days[0] if len(days) == 1 else f"{len(days)} days ({days[0]} .. {days[-1]})"
            notes.append(f"rollups of {span} not recounted: their raw data is gone, and a rollup holds no visitor ids "
                         f"to find; every event or path seen by fewer than {self.min_visitors} visitors that day is "
                         "counted in (other) there")
        others = sorted({o.host for o in getattr(self.archive, "objects", ()) if o.status == "rewritten"
                         and o.host != self.archive.host_id})
        if others and not self.dry_run:
            notes.append(f"objects of {', '.join(others)} were rewritten: each of those hosts replaces its local copy "
                         "and recounts that day's rollup on its next pass")
        return notes

    def to_dict(self) -> dict:
        return {**super().to_dict(), "rollups": {"recounted": self.rollups_recounted,
                                                 "not_recounted_raw_gone": self.rollups_without_raw},
                "notes": self.notes, "archive": self.archive.to_dict() if self.archive is not None else None}


class VisitorRule:
    """``rule(line)``: False for the lines of ``visitor_ids`` or of ids starting with a prefix (the lines to
    remove); ``rule.touches(block)``: whether a block of lines holds any of their text at all (most do not)."""

    def __init__(self, visitor_ids: frozenset[str] = frozenset(), prefixes: frozenset[str] = frozenset()):
        self.visitor_ids, self.prefixes = visitor_ids, prefixes
        exact = [json.dumps(v).encode() for v in visitor_ids]
        starts = [json.dumps(p).encode()[:-1] for p in prefixes]  # '"probe-7f3a' matches '"probe-7f3a-0001"'
        self.needles = exact + starts

    def touches(self, block: bytes) -> bool:
        return any(n in block for n in self.needles)

    def __call__(self, line: bytes) -> bool:
        if not self.touches(line):
            return True
        try:
            obj = json.loads(line)
        except ValueError:
            return True
        vid = obj.get("visitor_id") if isinstance(obj, dict) else None
        if not isinstance(vid, str):
            return True
        return not (vid in self.visitor_ids or any(vid.startswith(p) for p in self.prefixes))


def visitor_rule(visitor_ids: frozenset[str] = frozenset(), prefixes: frozenset[str] = frozenset()) -> VisitorRule:
    """A ``keep(line)`` predicate: False for the lines of ``visitor_ids`` or of ids starting with a prefix."""
    return VisitorRule(visitor_ids, prefixes)


def run_forget(store: Store, keep: Callable[[bytes], bool], *, now: float, level: int = 6,
               dry_run: bool = False, min_visitors: int = rollups.DEFAULT_MIN_VISITORS) -> ForgetResult:
    """Remove every line ``keep`` refuses from every data file (plain, shards, archives, the current file, a
    legacy regular ``metrics.jsonl``, which is adopted first as a pass would) and search the archives set aside as
    unreadable. The caller holds the maintenance lock. Each damaged file is one line in ``errors`` (the result
    is then not ok); every other file is still processed. Files are read and rewritten in constant memory. Then
    the rollups of the rewritten days are recounted (:func:`recount_rollups`)."""
    today = store.today(now)
    result = ForgetResult(("forget",), dry_run, today.isoformat(), min_visitors=min_visitors)
    if (unusable := store.unusable()) is not None:
        result.errors.append(unusable)
        return result
    touches = getattr(keep, "touches", None)
    listing = store.scan()
    done = Status.PLANNED if dry_run else Status.DONE
    if listing.legacy_link_file:
        listing = _legacy(store, listing, keep, now, level, result)
    result.unknown = listing.unknown
    for name in listing.temps:
        if name.endswith(FORGET_SUFFIX):
            action = Action("forget", Kind.REMOVE_TEMP, name, detail="left by a killed forget", status=done)
            result.actions.append(action)
            if not dry_run:
                try:
                    action.bytes_before, action.bytes_after = store.remove_temp(name), 0
                except (OSError, StoreError) as exc:
                    action.status, action.error = Status.FAILED, failure_text(exc, name)
    names = listing.by_name()
    pairs = [f.name for f in listing.files if not f.gz and f.name + ".gz" in names]
    if pairs and not dry_run:
        # A pass killed between writing an archive and removing its source leaves both. Filtering them apart would
        # make the plain file differ from the archive, and the next gzip pass would add it to the archive whole:
        # every line twice, the visitor back. So the pair becomes one archive first, as gzip would make it.
        for name in pairs:
            action = Action("forget", Kind.RECONCILE, name, status=done)
            try:
                action.detail, action.bytes_before, action.bytes_after = store.finish_compress(name, level)
            except (OSError, StoreError) as exc:
                action.status, action.error = Status.FAILED, failure_text(exc, name)
            result.actions.append(action)
        listing = store.scan()
    for f in listing.files:
        _rewrite(store, f.name, keep, touches, level, dry_run, result)
    for name in listing.aside:  # set aside by gzip as unreadable: searched, never rewritten
        try:
            found, damage = store.search(name, keep)
        except (OSError, StoreError) as exc:
            result.errors.append(f"cannot read {name}: {failure_text(exc, name)}")
            continue
        result.errors.append(_damaged(name, damage or "set aside as unreadable", found))
    recount_rollups(store, result, min_visitors=min_visitors, dry_run=dry_run)
    return result


def _rewrite(store: Store, name: str, keep, touches, level: int, dry_run: bool, result: PassResult,
             detail: str = "") -> None:
    """Filter one file (:meth:`Store.rewrite_without`); an action when it holds lines to remove or fails."""
    action = Action("forget", Kind.REWRITE, name, status=Status.PLANNED if dry_run else Status.DONE)
    try:
        done = store.rewrite_without(name, keep, level, dry_run=dry_run, touches=touches)
    except UnreadableFile as exc:
        result.errors.append(_damaged(exc.name, exc.why, exc.found))
        return
    except (OSError, StoreError) as exc:
        action.status, action.error = Status.FAILED, failure_text(exc, name)
    else:
        if done.unsearched:
            result.errors.append(f"{name}: {done.unsearched} line(s) longer than {MAX_LINE_TEXT} hold the text of "
                                 "these visitors' ids; such a line is no event and is never parsed: it was left as "
                                 "it is (remove it by hand)")
        if not done.removed:
            return
        action.bytes_before, action.bytes_after = done.bytes_before, done.bytes_after
        action.detail = f"{done.removed} line(s) {'to remove' if dry_run else 'removed'}{detail}"
    result.actions.append(action)


def _legacy(store: Store, listing: Listing, keep, now: float, level: int, result: PassResult) -> Listing:
    """A legacy regular ``metrics.jsonl`` (the existing system's layout, before the first pass): a dry run searches
    it where it is; otherwise the rotate step adopts it into the dated layout (as the next pass would), and it is
    filtered under its dated name like every other file."""
    name = store.link.name
    if result.dry_run:
        _rewrite(store, name, keep, getattr(keep, "touches", None), level, True, result,
                 " (the legacy regular file: adopted into the dated layout before it is filtered)")
        return listing
    adoption = run_pass(store, now=now, steps=("rotate",), level=level)
    result.actions.extend(adoption.actions)
    result.errors.extend(adoption.errors)
    listing = store.scan()
    if listing.legacy_link_file:
        result.errors.append(f"{name}: a legacy regular file that could not be adopted into the dated layout; "
                             "not searched")
    return listing


def recount_rollups(store: Store, result: ForgetResult, *, min_visitors: int, dry_run: bool) -> None:
    """Recount the rollup of every day whose raw data ``result`` rewrote (a rollup that cannot be written is
    deleted instead: the raw lines answer until the next pass writes it anew), fold the rollups without raw data
    that fold less than ``min_visitors`` asks, and name the rollup days whose raw data is gone."""
    done = Status.PLANNED if dry_run else Status.DONE
    rewritten = {f.day for a in result.actions if a.kind == Kind.REWRITE and a.status == done
                 and (f := parse_name(a.file)) is not None}
    try:
        have = rollups.existing(store.dir)
        raw_days = {f.day for f in store.scan().files}
        stale = rollups.stale(store.dir, raw_days, min_visitors)
    except OSError as exc:
        if rewritten:
            result.errors.append(f"{exc}: the rollups of the rewritten days were not recounted")
        return
    stale_days = {rollups.day_of_rollup(n) for n in stale}
    for day, name in sorted(have.items()):
        if day in rewritten:
            detail = "recounted from the rewritten raw data"
        elif day not in raw_days and day in stale_days:
            detail = f"folded in place: what fewer than {min_visitors} visitors saw into (other) (raw data gone)"
        else:
            continue
        action = Action("forget", Kind.ROLLUP, f"{ROLLUP_DIR}/{name}", detail=detail, status=done)
        if not dry_run:
            _write_or_drop(store, name, min_visitors, action)
        result.actions.append(action)
        if day in rewritten:
            result.rollups_recounted.append(day.isoformat())
    result.rollups_without_raw = sorted(d.isoformat() for d in have if d not in raw_days)


def _write_or_drop(store: Store, name: str, min_visitors: int, action: Action) -> None:
    try:
        action.bytes_after = rollups.write(store.dir, name, store.zone, min_visitors, store.file_mode)
        return
    except OSError as exc:
        why = failure_text(exc, name)
    try:
        action.bytes_before, action.bytes_after = rollups.delete(store.dir, name), 0
        action.detail = f"could not be recounted ({why}): deleted, the next pass writes it anew"
    except OSError as exc:
        action.status, action.error = Status.FAILED, f"{why}; and cannot be deleted: {failure_text(exc, name)}"


def _damaged(name: str, why: str, found: int) -> str:
    lines = (f"{found} line(s) of these visitors are in its readable part" if found
             else "its readable part holds none of these visitors")
    return (f"{name}: {why}; {lines}, the rest could not be searched; the file was left as it is "
            "(repair it, or delete it)")
