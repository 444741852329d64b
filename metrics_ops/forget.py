"""Deletion requests: remove visitors' events from every data file, archives and the file being written included.

The rule of what a visitor's line is lives here (the store only filters bytes with a predicate): a line is
removed when its JSON ``visitor_id`` is one of the ids, or starts with one of the prefixes (test traffic of one
``probe`` or ``sample-test`` run shares a prefix). A cheap substring test runs before the JSON parse.

Every file is read once, under its exclusive lock; serve's writer notices a rewritten file on its next append and
reopens it (see :meth:`metrics_ops.store.Store.append`), so the current file is as safe to rewrite as any other.
A damaged archive is never rewritten: the request names it and says how much of it could be searched.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from metrics_ops.maintenance import Action, Kind, PassResult, Status, failure_text
from metrics_ops.store import FORGET_SUFFIX, Store, StoreError, UnreadableFile


def visitor_rule(visitor_ids: frozenset[str] = frozenset(), prefixes: frozenset[str] = frozenset()
                 ) -> Callable[[bytes], bool]:
    """A ``keep(line)`` predicate: False for the lines of ``visitor_ids`` or of ids starting with a prefix."""
    exact = [json.dumps(v).encode() for v in visitor_ids]
    starts = [json.dumps(p).encode()[:-1] for p in prefixes]  # '"probe-7f3a' matches '"probe-7f3a-0001"'
    needles = exact + starts

    def keep(line: bytes) -> bool:
        if not any(n in line for n in needles):
            return True
        try:
            obj = json.loads(line)
        except ValueError:
            return True
        vid = obj.get("visitor_id") if isinstance(obj, dict) else None
        if not isinstance(vid, str):
            return True
        return not (vid in visitor_ids or any(vid.startswith(p) for p in prefixes))

    return keep


def run_forget(store: Store, keep: Callable[[bytes], bool], *, now: float, level: int = 6,
               dry_run: bool = False) -> PassResult:
    """Remove every line ``keep`` refuses from every data file (plain, shards, archives, the current file) and
    search the archives set aside as unreadable. The caller holds the maintenance lock. Each damaged file is
    one line in ``errors`` (the result is then not ok); every other file is still processed."""
    today = store.today(now)
    result = PassResult(("forget",), dry_run, today.isoformat())
    if (unusable := store.unusable()) is not None:
        result.errors.append(unusable)
        return result
    listing = store.scan()
    result.unknown = listing.unknown
    done = Status.PLANNED if dry_run else Status.DONE
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
        action = Action("forget", Kind.REWRITE, f.name, status=done)
        try:
            removed, action.bytes_before, action.bytes_after = store.rewrite_without(f.name, keep, level,
                                                                                   dry_run=dry_run)
        except UnreadableFile as exc:
            result.errors.append(_damaged(exc.name, exc.why, exc.found))
            continue
        except (OSError, StoreError) as exc:
            action.status, action.error = Status.FAILED, failure_text(exc, f.name)
        else:
            if not removed:
                continue
            action.detail = f"{removed} line(s) {'to remove' if dry_run else 'removed'}"
        result.actions.append(action)
    for name in listing.aside:  # set aside by gzip as unreadable: searched, never rewritten
        try:
            data, damage = store.read_data(name)
        except (OSError, StoreError) as exc:
            result.errors.append(f"cannot read {name}: {failure_text(exc, name)}")
            continue
        found = sum(1 for line in data.splitlines() if not keep(line))
        result.errors.append(_damaged(name, damage or "set aside as unreadable", found))
    return result


def _damaged(name: str, why: str, found: int) -> str:
    lines = (f"{found} line(s) of these visitors are in its readable part" if found
             else "its readable part holds none of these visitors")
    return (f"{name}: {why}; {lines}, the rest could not be searched; the file was left as it is "
            "(repair it, or delete it)")
