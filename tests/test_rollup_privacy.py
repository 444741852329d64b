"""Derived data keeps the data's promises (issue 18, items 7, 8, 10, 11, 13, 16): rollups hold nothing that singles
anyone out (K visitors, top N, (other)), forget reaches them, they stay small, a ranking from folded rollups says
it is approximate, nothing follows a symlink, and every file of counts or events follows METRICS_FILE_MODE."""

import json
import os
import stat
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from freezegun import freeze_time

from metrics_ops import rollups
from metrics_ops.folding import OTHER, TOP, TOP_PAIRS
from metrics_ops.maintenance import Kind, run_pass
from metrics_ops.report import run_report
from metrics_ops.store import Store, file_name

ZONE = ZoneInfo("UTC")
TODAY = date(2026, 6, 15)
NOW = datetime(2026, 6, 15, 12, tzinfo=UTC).timestamp()
SECRET = "/account/alice@example.com/reset"


def line(visitor, event, day, n, path="/"):
    at = f"{day.isoformat()}T{n % 24:02d}:{n % 60:02d}:00.{n % 1000000:06d}Z"
    return json.dumps({"visitor_id": visitor, "event": event, "metadata": {"path": path}, "received_at": at,
                       "ts": at, "client_rate": 1, "server_rate": 0.5}, separators=(",", ":"))


def write_day(data_dir, day, lines):
    (data_dir / file_name(day)).write_text("".join(x + "\n" for x in lines))


def ordinary(day, extra=()):
    """Traffic of 8 visitors on 3 paths and 2 events (each seen by 5 or more), plus ``extra`` lines."""
    lines = [line(f"v{i % 8}", "page_view" if i % 3 else "click", day, i, f"/p{i % 3}") for i in range(48)]
    return lines + list(extra)


def a_pass(data_dir, now=NOW, steps=("rotate", "rollup", "gzip", "prune"), **kw):
    kw.setdefault("gzip_after", 3)
    kw.setdefault("retention", 30)
    return run_pass(Store(data_dir, ZONE, clock=lambda: now), now=now, steps=steps, **kw)


def report(data_dir, since, until=TODAY, **kw):
    return run_report(data_dir, since=since, until=until, today=TODAY, zone=ZONE, tz="UTC", **kw)


def doc_of(data_dir, day):
    return json.loads((data_dir / "rollups" / rollups.rollup_name(day)).read_text())


# ----------------------------------------------------------------------------- item 7: K visitors
def test_a_path_or_event_seen_by_fewer_than_k_visitors_is_folded_into_other(data_dir):
    day = TODAY - timedelta(days=1)
    secret = [line("alice", "reset.request", day, 1, SECRET), line("alice", "reset.request", day, 2, SECRET)]
    pair = [line("w1", "rare.pair", day, 3, "/p0"), line("w2", "rare.pair", day, 4, "/p1")]
    write_day(data_dir, day, ordinary(day, secret + pair))
    result = a_pass(data_dir)
    assert [a.file for a in result.actions if a.kind == Kind.ROLLUP] == [rollups.rollup_name(day)]
    text = (data_dir / "rollups" / rollups.rollup_name(day)).read_text()
    assert "alice" not in text and "reset.request" not in text and "rare.pair" not in text
    r = rollups.read(data_dir, day)
    assert r.min_visitors == 5
    assert {k[0] for k in r.views[("path",)]} == {"/p0", "/p1", "/p2", OTHER}
    assert {k[0] for k in r.views[("event",)]} == {"page_view", "click", OTHER}
    assert r.views[("event",)][(OTHER,)].events == 4 and r.views[("event",)][(OTHER,)].visitors == 3
    assert r.views[("path",)][(OTHER,)].events == 2  # only alice's path: /p0 and /p1 have 8 visitors
    assert all(OTHER in k or "rare.pair" not in k for v in r.views.values() for k in v)
    assert r.views[()][()].events == 52  # nothing lost: every line is counted, some in (other)
    assert not r.exact(("path",)) and not r.exact(("event", "hour")) and r.exact(("hour",)) and r.exact(())


def test_rollup_min_visitors_is_a_setting_and_a_bad_value_is_one_line(data_dir, run):
    day = TODAY - timedelta(days=1)
    two = [line("w1", "rare.pair", day, 3, "/two"), line("w2", "rare.pair", day, 4, "/two")]
    write_day(data_dir, day, ordinary(day, two))
    with freeze_time(f"{TODAY} 12:00:00"):
        bad = run("--data-dir", data_dir, "rotate", "--once", env={"METRICS_ROLLUP_MIN_VISITORS": "1"})
        assert bad.exit_code == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert "METRICS_ROLLUP_MIN_VISITORS=1 (from the environment): want at least 2" in bad.stderr
        ok = run("--data-dir", data_dir, "rotate", "--once", env={"METRICS_ROLLUP_MIN_VISITORS": "2"})
    assert ok.exit_code == 0, ok.output
    r = rollups.read(data_dir, day)
    assert r.min_visitors == 2 and ("/two",) in r.views[("path",)] and ("rare.pair",) in r.views[("event",)]
    # a later pass with a larger K folds the rollup again (a smaller K never unfolds it)
    a_pass(data_dir, rollup_min_visitors=5)
    again = rollups.read(data_dir, day)
    assert again.min_visitors == 5 and ("/two",) not in again.views[("path",)]


def test_the_raw_report_of_a_day_is_unchanged_and_a_report_from_a_folded_rollup_says_so(data_dir, run):
    day = TODAY - timedelta(days=1)
    write_day(data_dir, day, ordinary(day, [line("alice", "page_view", day, 1, SECRET)]))
    before = report(data_dir, day, day, by=("day", "path"), top=20)
    a_pass(data_dir)
    with_rollup = report(data_dir, day, day, by=("day", "path"), top=20)
    assert [r.to_dict() for r in with_rollup.rows] == [r.to_dict() for r in before.rows]
    assert SECRET in {r.keys["path"] for r in with_rollup.rows} and with_rollup.raw_days == [day]
    assert report(data_dir, day, day, by=("day",)).rollup_days == [day]  # the whole day folds nothing
    (data_dir / file_name(day)).unlink()  # raw retention is over: only the rollup is left
    with freeze_time(f"{TODAY} 12:00:00"):
        r = run("--data-dir", data_dir, "report", "--since", day, "--until", day, "--by", "path", "--json")
    doc = json.loads(r.stdout)
    assert doc["days"]["rollup"] == [day.isoformat()] and doc["folded_days"] == [day.isoformat()]
    paths = {row["path"]: row["events"] for row in doc["rows"]}
    assert SECRET not in paths and paths[OTHER] == 1 and sum(paths.values()) == 49
    assert any(n.startswith("folded:") and "fewer than 5 visitors" in n for n in doc["notes"])


# ----------------------------------------------------------------------------- item 8: forget reaches rollups
def test_forget_recounts_the_rollups_of_the_days_it_rewrote_and_names_those_it_cannot(data_dir, run):
    gone, kept = TODAY - timedelta(days=40), [TODAY - timedelta(days=n) for n in (3, 2, 1)]
    for day in [gone, *kept]:
        write_day(data_dir, day, ordinary(day, [line("leaver", "page_view", day, n, "/p1") for n in range(6)]))
    a_pass(data_dir, now=NOW - 39 * 86400, steps=("rollup",))  # the old day's rollup
    a_pass(data_dir, gzip_after=2)  # the other rollups; the old day's raw data is pruned, day 3 compressed
    assert rollups.existing(data_dir).keys() == {gone, *kept}
    assert not (data_dir / file_name(gone)).exists() and (data_dir / (file_name(kept[0]) + ".gz")).exists()
    with freeze_time(f"{TODAY} 12:00:00"):
        r = run("--data-dir", data_dir, "forget", "leaver", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["rollups"] == {"recounted": [d.isoformat() for d in kept], "not_recounted_raw_gone": [gone.isoformat()]}
    assert {a["file"] for a in doc["actions"] if a["kind"] == "rollup"} == {
        f"rollups/{rollups.rollup_name(d)}" for d in kept}
    assert any(gone.isoformat() in n and "raw data is gone" in n for n in doc["notes"])
    for by in (("day",), ("day", "event"), ("day", "hour"), ("day", "event", "hour"), ("day", "path")):
        with_rollups = report(data_dir, kept[0], by=by)
        assert with_rollups.rollup_days == kept, by  # the rollups are used, and say what the raw lines say
        raw = report(data_dir, kept[0], by=by, use_rollups=False)
        assert [row.to_dict() for row in with_rollups.rows] == [row.to_dict() for row in raw.rows], by
    summed = report(data_dir, kept[0], by=("event",))  # over several days: the same counts and estimates
    raw = report(data_dir, kept[0], by=("event",), use_rollups=False)
    assert [(r.keys, r.est.events, r.est.estimate) for r in summed.rows] == [
        (r.keys, r.est.events, r.est.estimate) for r in raw.rows]
    with freeze_time(f"{TODAY} 12:00:00"):
        text = run("--data-dir", data_dir, "forget", "nobody")
    assert f"rollups of {gone.isoformat()} not recounted: their raw data is gone" in text.stderr


def test_forget_that_cannot_write_a_rollup_deletes_it_so_the_raw_lines_answer(data_dir):
    from metrics_ops.forget import run_forget, visitor_rule

    day = TODAY - timedelta(days=1)
    write_day(data_dir, day, ordinary(day, [line("leaver", "click", day, n) for n in range(3)]))
    a_pass(data_dir)
    blocker = data_dir / "rollups" / (rollups.rollup_name(day) + ".tmp")
    blocker.mkdir()  # where the new rollup would be written: a directory that is not empty (even root fails)
    (blocker / "x").write_text("")
    result = run_forget(Store(data_dir, ZONE), visitor_rule(frozenset({"leaver"})), now=NOW)
    assert result.ok and result.rollups_recounted == [day.isoformat()]
    [action] = [a for a in result.actions if a.kind == Kind.ROLLUP]
    assert action.detail.startswith("could not be recounted") and "deleted" in action.detail
    assert not (data_dir / "rollups" / rollups.rollup_name(day)).exists()
    after = report(data_dir, day, by=("day", "event"))
    assert day in after.raw_days and after.rollup_days == []


# ----------------------------------------------------------------------------- item 10: bounded size
def test_a_rollup_stays_small_whatever_the_names_and_paths(data_dir):
    day = TODAY - timedelta(days=1)
    events = [f"e{i:03d}." + "x" * 1100 for i in range(150)]  # longer than serve accepts: legacy lines
    paths = [f"/{i:03d}/" + "y" * 1010 for i in range(150)]  # 1015 bytes: kept when frequent enough
    # 150 long names and 100 ordinary ones, each seen by 40 visitors, over 150 long paths: 10,000 pairs
    lines = [line(f"v{i // 150}", events[i % 150], day, i, paths[(i % 150 + i // 150) % 150]) for i in range(6000)]
    lines += [line(f"u{i}", f"one.{i}", day, i, f"/once/{i}") for i in range(3000)]  # 3,000 names seen once
    escaped = "/" + "\x01" * 300  # 301 characters, 1,801 bytes as JSON: never kept, however often seen
    lines += [line(f"v{i}", "ok.0", day, i, escaped) for i in range(40) for _ in range(20)]
    lines += [line(f"v{i // 100 % 40}", f"ok.{i % 100}", day, i, paths[(i % 100 * 3 + i // 100) % 150])
              for i in range(12000)]
    write_day(data_dir, day, lines)
    a_pass(data_dir)
    path = data_dir / "rollups" / rollups.rollup_name(day)
    doc = json.loads(path.read_text())
    assert path.stat().st_size < 1_000_000, path.stat().st_size
    assert len(doc["values"]["event"]) <= TOP + 1 and len(doc["values"]["path"]) <= TOP + 1
    assert len(doc["views"]["event,path"]) <= TOP_PAIRS + TOP + 1
    assert not any(len(e) > 1024 for e in doc["values"]["event"])  # longer than serve's limit: (other)
    assert "/" + "\x01" * 300 not in doc["values"]["path"]
    r = rollups.read(data_dir, day)
    assert r.views[()][()].events == len(lines)
    for view, cells in r.views.items():
        assert sum(e.events for e in cells.values()) == len(lines), view  # folded, never dropped
    assert r.views[("event",)][(OTHER,)].events == 6000 + 3000  # the long names and the ones seen once


# ----------------------------------------------------------------------------- item 11: rankings
def ranking_days(data_dir):
    """3 days whose raw lines are gone: each has 100 paths of 10 events and /star with 9 (#101 each day, #1 over
    the three days: 27 events against 10); /home is #1 every day."""
    days = [TODAY - timedelta(days=n) for n in (3, 2, 1)]
    for d, day in enumerate(days):
        lines = [line(f"v{j % 5}", "page_view", day, j, f"/d{d}/p{i:03d}") for i in range(100) for j in range(10)]
        lines += [line(f"v{j % 5}", "page_view", day, j, "/star") for j in range(9)]
        lines += [line(f"v{j % 5}", "page_view", day, j, "/home") for j in range(50)]
        write_day(data_dir, day, lines)
    a_pass(data_dir, gzip_after=10)
    for day in days:
        (data_dir / file_name(day)).unlink()  # raw retention over
    return days


def test_a_ranking_from_folded_rollups_is_marked_approximate_in_the_table_and_json(data_dir, run):
    days = ranking_days(data_dir)
    with freeze_time(f"{TODAY} 12:00:00"):
        r = run("--data-dir", data_dir, "report", "--since", days[0], "--until", days[-1], "--by", "path",
                "--top", "3", "--json")
        piped = run("--data-dir", data_dir, "report", "--since", days[0], "--until", days[-1], "--by", "path",
                    "--top", "3")
    doc = json.loads(r.stdout)
    assert doc["days"]["rollup"] == [d.isoformat() for d in days]
    assert "/star" not in {row["path"] for row in doc["rows"]}  # it is in (other) every day
    assert doc["ranking"] == "approximate" and doc["approximate"] is True
    assert any(n.startswith("ranking approximate") for n in doc["notes"])
    assert "(approximate: see notes)" in piped.stdout.splitlines()[0] or "approximate" in piped.stdout
    assert piped.stdout.splitlines()[0].split("\t")[-1] == "approximate"
    assert "ranking approximate" in piped.stderr


def test_a_ranking_the_folds_cannot_change_is_exact(data_dir):
    days = ranking_days(data_dir)
    result = report(data_dir, days[0], days[-1], by=("path",), top=1)
    assert result.ranking == "exact" and not result.approximate
    rows = {r.keys["path"]: r.est.events for r in result.rows}
    assert rows == {"/home": 150, OTHER: 3 * 1009}
    # a path some day does not list may count too few: its row says so
    daily = report(data_dir, days[0], days[-1], by=("path",), top=100)
    assert daily.ranking == "approximate"
    raw_like = report(data_dir, days[0], days[-1], by=("day", "path"), top=300)
    assert all(not r.approximate for r in raw_like.rows)  # every listed (day, path) is that day's own count


# ----------------------------------------------------------------------------- item 13: no symlink
def test_a_rollups_directory_that_is_a_symlink_is_refused_and_nothing_outside_is_touched(data_dir, tmp_path, run):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / rollups.rollup_name(date(2020, 1, 1))).write_text("foreign, old enough to be 'past retention'")
    (outside / "keep.txt").write_text("foreign")
    os.symlink(outside, data_dir / "rollups")
    for n in (5, 1):
        day = TODAY - timedelta(days=n)
        write_day(data_dir, day, ordinary(day))
    result = a_pass(data_dir, gzip_after=3)
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt", rollups.rollup_name(date(2020, 1, 1))]
    assert [e for e in result.errors if "rollups" in e] == [
        f"rollup: {data_dir / 'rollups'} is a symbolic link: rollups are never read or written through a link "
        "(make it a directory of its own)"]
    assert not result.ok
    assert (data_dir / (file_name(TODAY - timedelta(days=5)) + ".gz")).exists()  # gzip still ran
    assert (data_dir / "metrics.jsonl").is_symlink()  # and rotate
    got = report(data_dir, TODAY - timedelta(days=5), by=("day",))
    assert got.raw_days and not got.rollup_days and any("symbolic link" in n for n in got.notes)
    with freeze_time(f"{TODAY} 12:00:00"):
        r = run("--data-dir", data_dir, "rotate", "--once")
    assert r.exit_code == 1 and "Traceback" not in r.stderr
    assert [x for x in r.stderr.splitlines() if "symbolic link" in x] == [f"metrics-ops: {result.errors[0]}"]
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt", rollups.rollup_name(date(2020, 1, 1))]
    with pytest.raises(rollups.RollupDirError):
        rollups.write(data_dir, rollups.rollup_name(TODAY - timedelta(days=1)), ZONE)
    with pytest.raises(rollups.RollupDirError):
        rollups.delete(data_dir, rollups.rollup_name(date(2020, 1, 1)))
    assert (outside / rollups.rollup_name(date(2020, 1, 1))).exists()


def test_a_rollup_file_that_is_a_symlink_is_never_read_or_followed(data_dir, tmp_path):
    day = TODAY - timedelta(days=1)
    write_day(data_dir, day, ordinary(day))
    a_pass(data_dir)
    target = tmp_path / "elsewhere.json"
    target.write_text((data_dir / "rollups" / rollups.rollup_name(day)).read_text())
    old = TODAY - timedelta(days=500)
    os.symlink(target, data_dir / "rollups" / rollups.rollup_name(old))
    assert rollups.read(data_dir, old) is None
    result = a_pass(data_dir, now=NOW + 3600)
    assert [a.file for a in result.actions if a.kind == Kind.DROP_ROLLUP] == [rollups.rollup_name(old)]
    assert target.exists() and not os.path.lexists(data_dir / "rollups" / rollups.rollup_name(old))


# ----------------------------------------------------------------------------- item 16: file mode
@pytest.mark.parametrize(("file_mode", "want_file", "want_dir"), [(None, 0o640, 0o750), ("0600", 0o600, 0o700)])
def test_rollups_and_export_follow_the_file_mode(data_dir, run, tmp_path, file_mode, want_file, want_dir):
    day = TODAY - timedelta(days=1)
    write_day(data_dir, day, ordinary(day))
    env = {"METRICS_FILE_MODE": file_mode} if file_mode else {}
    old = os.umask(0o022)
    try:
        with freeze_time(f"{TODAY} 12:00:00"):
            assert run("--data-dir", data_dir, "rotate", "--once", env=env).exit_code == 0
            out = tmp_path / "out.jsonl"
            out.write_text("an older export, world-readable")
            os.chmod(out, 0o644)
            r = run("--data-dir", data_dir, "export", "--since", day, "--until", day, "--output", out, env=env)
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.output
    assert stat.S_IMODE((data_dir / "rollups").stat().st_mode) == want_dir
    assert stat.S_IMODE((data_dir / "rollups" / rollups.rollup_name(day)).stat().st_mode) == want_file
    assert stat.S_IMODE(out.stat().st_mode) == want_file and len(out.read_text().splitlines()) == 48


# ----------------------------------------------------------------------------- format 1
def v1_rollup(day, with_secret=True):
    """A rollup as the format-1 writer made it: literal keys, the paths beyond the top 100 as `other`."""
    est = lambda n, v: [n, v, 2.0 * n, 0.0]  # noqa: E731
    paths = [["/p0", *est(40, 8)], ["other", *est(3, 3)]] + ([[SECRET, *est(1, 1)]] if with_secret else [])
    return {"format": 1, "day": day.isoformat(), "tz": "UTC", "lines": 44 if with_secret else 43, "test_lines": 0,
            "unweighted": 0, "damaged": 0, "problems": [],
            "views": {"": [est(44, 9)], "event": [["page_view", *est(44, 9)]], "hour": [["12", *est(44, 9)]],
                      "path": paths, "event,hour": [["page_view", "12", *est(44, 9)]],
                      "event,path": [["page_view", *row] for row in paths]}}


def test_format_1_rollups_are_read_and_rewritten_by_the_next_pass(data_dir):
    gone, raw_day = TODAY - timedelta(days=30), TODAY - timedelta(days=1)
    write_day(data_dir, raw_day, ordinary(raw_day, [line("alice", "page_view", raw_day, 1, SECRET)]))
    (data_dir / "rollups").mkdir()
    for day in (gone, raw_day):
        (data_dir / "rollups" / rollups.rollup_name(day)).write_text(json.dumps(v1_rollup(day)))
    old = report(data_dir, gone, by=("day", "path"), top=100)
    assert old.rollup_days == [gone] and old.raw_days == [raw_day]  # the raw lines win where folds differ
    assert {r.keys["path"] for r in old.rows if r.keys["day"] == gone.isoformat()} == {"/p0", OTHER, SECRET}
    result = a_pass(data_dir)
    assert sorted(a.file for a in result.actions if a.kind == Kind.ROLLUP) == [
        rollups.rollup_name(gone), rollups.rollup_name(raw_day)]
    for day in (gone, raw_day):
        doc = doc_of(data_dir, day)
        assert doc["format"] == rollups.FORMAT and doc["min_visitors"] == 5 and "alice" not in json.dumps(doc)
    folded = rollups.read(data_dir, gone)
    assert folded.views[("path",)][(OTHER,)].events == 4 and folded.views[("path",)][(OTHER,)].visitors is None
    assert folded.views[()][()].events == 44
    assert rollups.read(data_dir, raw_day).views[()][()].events == 49  # recounted from the raw lines
