"""The stress test of issue 18 ("Done when"): hostile lines in a 30-day data directory while serve takes traffic and
rotate, forget and report run in loops, all real processes at once.

The directory holds 30 days of serve-shaped lines (serve's own encoder), plain and gzipped, one day with two
shards, and among them: sampling rates too small to weigh (5e-324, 1e-300), a ``received_at`` of
9999-12-31T23:59:59Z (no hour of it exists in Europe/Berlin), a NaN, a torn line, a 24 MiB line inside a small
``.gz`` (bench/hostile_bench.py measures the issue's 1 GiB line), unterminated last lines (a past day's plain file,
and today's file that serve then appends to), a day with 20,000 event names, and the tool's own leftover temp files.

While two clients post events to ``metrics-ops serve`` (tiny shards, so serve keeps cutting them), a
``rotate --interval`` sidecar runs a day ahead (libfaketime), so it rolls up and compresses the very file serve is
writing, pass after pass; ``forget`` erases visitors (seeded ones, and served ones once their last event was
answered) and ``report --json`` reads, each in a loop. Afterwards:

- the rotator never stopped, and its last pass succeeded;
- every line that was answered ``stored: 1`` and not forgotten is on disk exactly once (the reader's no-loss
  oracle), every seeded line too, every hostile line is still stored, byte for byte; nothing forgotten is left;
- ``report --no-rollups --json`` counts exactly those lines, and its damaged lines are exactly the hostile ones;
  with rollups it gives the same count for every past day; DuckDB over the reading glob ``metrics-*.jsonl*``
  counts the same lines (told apart from hostile ones by a marker), and the glob matches data files only;
- the peak RSS of the rotator and of every report and forget stays under 300 MB; the rollup of the day with
  20,000 event names stays under 1 MB.
"""

from __future__ import annotations

import gzip
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import date, datetime, timedelta
from fnmatch import fnmatch
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from metrics_ops.events import encode_record
from metrics_ops.health import read_status
from metrics_ops.layout import parse_name
from metrics_ops.store import file_name

from .helpers import CLI, all_lines
from .serve_process import LIBFAKETIME, Server, shifted_clock

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(LIBFAKETIME is None, reason="needs libfaketime (apt-get install faketime)")]

TZ = "Europe/Berlin"
AHEAD = 86400  # the rotator's clock: a day ahead, so serve's today is its yesterday (rolled up, compressed)
TRAFFIC = 20.0  # seconds of traffic at least (and until every loop has done its share)
PAUSE = 0.01  # seconds between a client's events: thousands of events, not a benchmark
LIMIT = 150.0  # seconds the whole run may take before the test gives up
PEAK_MB = 300
LONG = 24 << 20  # the long line: 24 MiB (bench/hostile_bench.py: 1 GiB)
SEEDED_FORGET = [f"fz{i}" for i in range(3)]  # seeded visitors forget erases, one per loop round
EVENTS = ["page_view", "click", "scroll", "signup", "outbound"]

#: run a command, then print the peak RSS (KiB) of it and every process it waited for (its report workers)
MEASURED = ("import resource, subprocess, sys\n"
            "rc = subprocess.call(sys.argv[1:])\n"
            "sys.stderr.write('\\npeak-kib %d\\n' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
            "sys.exit(rc)\n")


def strict_json(text: str):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


class Seeder:
    """Serve-shaped lines, each with a unique ``metadata.n`` and ``metadata.src`` (seed or hostile)."""

    def __init__(self):
        self.n = itertools.count(1)
        self.valid: dict[int, str] = {}  # n -> visitor
        self.hostile: dict[int, str] = {}
        self.raw_hostile: list[bytes] = []  # hostile lines that are not JSON: found by their bytes

    def line(self, day: date, visitor: str, event: str = "page_view", *, hostile: bool = False,
             client: float | None = None, server: float = 1.0, at: str | None = None) -> bytes:
        n = next(self.n)
        ev = {"visitor_id": visitor, "event": event,
              "metadata": {"path": f"/p/{n % 40}", "src": "hostile" if hostile else "seed", "n": n}}
        if client is not None:
            ev["client_rate"] = client
        (self.hostile if hostile else self.valid)[n] = visitor
        return encode_record(ev, at or f"{day.isoformat()}T{8 + n % 10:02d}:{n % 60:02d}:00.000000Z", server)

    def day(self, day: date, count: int) -> list[bytes]:
        """``count`` valid lines; the visitors to forget appear on every day."""
        return [self.line(day, SEEDED_FORGET[i // 2 % 3] if i % 50 < 2 else f"s{day.day}-{i % 200}",
                          EVENTS[i % 5]) for i in range(count)]

    def tiny_rates(self, day: date) -> list[bytes]:
        return [self.line(day, "h1", hostile=True, client=5e-324), self.line(day, "h2", hostile=True, server=1e-300),
                self.line(day, "h3", hostile=True, client=1e-7, server=1e-6)]

    def raw(self, text: bytes) -> bytes:
        self.raw_hostile.append(text)
        return text + b"\n"


def seed(data: Path, today: date) -> Seeder:
    s = Seeder()
    ago = {k: today - timedelta(days=k) for k in range(31)}
    for k in range(4, 31):
        if k not in (6, 10, 12, 15):
            (data / file_name(ago[k], gz=True)).write_bytes(gzip.compress(b"".join(s.day(ago[k], 400)), 1))
    # plain days: one ends in a valid line without its newline (a legacy file), one holds tiny rates, a NaN and
    # a torn line between good lines (the report's shortcut and its line-by-line reader both meet them)
    (data / file_name(ago[1])).write_bytes(b"".join(s.day(ago[1], 400)))
    (data / file_name(ago[2])).write_bytes(b"".join(s.day(ago[2], 399)) + s.line(ago[2], "fz0").rstrip(b"\n"))
    good = s.day(ago[3], 400)
    nan = b'{"visitor_id":"h4","event":"click","metadata":{"src":"hostile"},"client_rate":NaN,"server_rate":1.0,' \
          b'"received_at":"' + ago[3].isoformat().encode() + b'T09:00:00.000000Z"}'
    (data / file_name(ago[3])).write_bytes(b"".join(good[:200] + s.tiny_rates(ago[3])) + s.raw(nan)
                                           + s.raw(b'{"visitor_id":"h5","ev') + b"".join(good[200:]))
    # thousands of event names in one day
    (data / file_name(ago[6])).write_bytes(b"".join(s.line(ago[6], f"n{i % 300}", f"name.{i}")
                                                    for i in range(20_000)))
    # a 24 MiB line inside a small archive, between good lines
    head = (b'{"visitor_id":"h6","event":"blob","metadata":{"src":"hostile","blob":"')
    lines = s.day(ago[10], 400)
    with gzip.open(data / file_name(ago[10], gz=True), "wb", compresslevel=1) as gz:
        gz.write(b"".join(lines[:200]) + head + b"y" * (LONG - len(head) - 4) + b'"}}\n' + b"".join(lines[200:]))
    # far-future received_at and tiny rates in an archive
    far = s.line(ago[12], "h7", hostile=True, at="9999-12-31T23:59:59.000000Z")
    (data / file_name(ago[12], gz=True)).write_bytes(gzip.compress(
        b"".join(s.day(ago[12], 200) + [far] + s.tiny_rates(ago[12]) + s.day(ago[12], 200)), 1))
    # a day of two shards: an archive and a plain .1
    (data / file_name(ago[15], gz=True)).write_bytes(gzip.compress(b"".join(s.day(ago[15], 300)), 1))
    (data / file_name(ago[15], 1)).write_bytes(b"".join(s.day(ago[15], 100) + s.tiny_rates(ago[15])))
    # today: an older writer's lines, the last torn off its newline (but whole JSON); serve appends after it
    (data / file_name(today)).write_bytes(b"".join(s.day(today, 50)) + s.line(today, "fz1").rstrip(b"\n"))
    # the tool's leftovers from killed passes and forgets: copies of a day's lines, a half-written archive; the
    # hidden names of this version, and the names of earlier versions (inside the glob until a pass clears them)
    copy = (data / file_name(ago[4], gz=True)).read_bytes()
    (data / f".{file_name(ago[4], gz=True)}.forget.tmp").write_bytes(copy)
    (data / f".{file_name(ago[1])}.gz.tmp").write_bytes(copy[: len(copy) // 2])
    (data / f"{file_name(ago[2])}.gz.tmp").write_bytes(copy[: len(copy) // 3])
    (data / f"{file_name(ago[5], gz=True)}.forget.tmp").write_bytes(copy)
    return s


def measured(args: list[str], env: dict, timeout: float = 300) -> tuple[int, str, str, float]:
    """Run ``metrics-ops ARGS``: (exit status, stdout, stderr, peak RSS in MB of it and its workers)."""
    proc = subprocess.run([sys.executable, "-c", MEASURED, *CLI, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)
    err, _, peak = proc.stderr.rpartition("\npeak-kib ")
    return proc.returncode, proc.stdout, err, int(peak) / 1024


class Run:
    """The shared state of the threads: what was stored, forgotten and measured, and what went wrong."""

    def __init__(self):
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.stored: dict[int, str] = {}  # n -> visitor, answered stored: 1
        self.unknown: set[int] = set()  # no answer (the line may or may not be stored)
        self.answers: Counter = Counter()
        self.tiny_answers: Counter = Counter()  # answers to events with a tiny sample_rate
        self.cohort = [0, 0]  # each client's current cohort of visitors
        self.forgotten: set[str] = set()
        self.forgets = self.reports = 0
        self.peaks: dict[str, float] = {}
        self.failures: list[str] = []
        self.watching = threading.Event()  # cleared when the rotator may stop

    def peak(self, what: str, mb: float) -> None:
        with self.lock:
            self.peaks[what] = max(self.peaks.get(what, 0), mb)


def client(run: Run, server: Server, me: int, numbers) -> None:
    with server.connection() as conn:
        while not run.stop.is_set():
            n = next(numbers)
            cohort = n // 40
            run.cohort[me] = cohort
            visitor = f"t{me}c{cohort}v{n % 5}"
            event = {"visitor_id": visitor, "event": EVENTS[n % 5],
                     "metadata": {"path": f"/s/{n % 30}?token=secret{n}#frag", "src": "serve", "n": n}}
            tiny = n % 50 == 7
            if tiny:
                event["sample_rate"] = (5e-324, 1e-300)[n % 2]
                event["metadata"]["src"] = "serve-tiny"
            try:
                status, body = server.post_event(event, conn=conn)
            except OSError as exc:
                run.unknown.add(n)
                run.failures.append(f"client {me}: no answer to event {n}: {exc}")
                conn.close()
                continue
            stored = status == 202 and isinstance(body, dict) and body.get("stored") == 1
            (run.tiny_answers if tiny else run.answers)[status] += 1
            if stored:
                run.stored[n] = visitor
            run.stop.wait(PAUSE)


def forget_loop(run: Run, env: dict) -> None:
    """Each round erases one seeded visitor and a few served ones whose client has moved on (every event of theirs
    answered): each forgotten only once forget said so."""
    seeded = list(SEEDED_FORGET)
    served_round = 0
    while not run.stop.is_set():
        done_cohort = min(run.cohort) - 1
        served = [f"t{me}c{c}v{v}" for me in (0, 1) for c in range(served_round, done_cohort)[:1] for v in (1, 3)]
        targets = seeded[:1] + served
        if targets:
            rc, out, err, peak = measured(["forget", *targets, "--lock-timeout", "60"], env)
            run.peak("forget", peak)
            if rc == 0:
                run.forgotten.update(targets)
                seeded = seeded[1:]
                served_round += bool(served)
                run.forgets += 1
            elif rc != 3:  # 3: a pass held the lock a minute: try again
                run.failures.append(f"forget {targets}: exit {rc}: {err.strip()[-500:]}")
                return
        run.stop.wait(0.5)


def report_loop(run: Run, env: dict) -> None:
    kinds = [["--no-rollups"], ["--by", "event"], ["--by", "day,event"], ["--by", "path", "--no-rollups"]]
    for args in itertools.cycle(kinds):
        if run.stop.is_set():
            return
        rc, out, err, peak = measured(["report", "--since", "40d", "--json", *args], env)
        run.peak("report", peak)
        try:
            strict_json(out)
        except ValueError as exc:
            run.failures.append(f"report {args}: not JSON ({exc}): {out[:300]!r}")
        if rc != 0 or "Traceback" in err:
            run.failures.append(f"report {args}: exit {rc}: {err.strip()[-500:]}")
        run.reports += 1


def watch_rotator(run: Run, proc: subprocess.Popen) -> None:
    """The rotator's peak RSS (VmHWM: its own, not its parent's before exec), and whether it ever stopped."""
    while run.watching.is_set():
        try:
            with open(f"/proc/{proc.pid}/status") as fh:
                hwm = next(line for line in fh if line.startswith("VmHWM"))
            run.peak("rotate", int(hwm.split()[1]) / 1024)
        except (OSError, StopIteration):
            pass
        if proc.poll() is not None:
            run.failures.append(f"the rotator stopped: exit {proc.returncode}")
            return
        time.sleep(0.2)


def until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_hostile_lines_under_traffic_with_rotate_forget_and_report_looping(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    today = datetime.now(ZoneInfo(TZ)).date()
    seeded = seed(data, today)
    env = {**os.environ, "METRICS_DIR": str(data), "METRICS_TZ": TZ, "METRICS_MAX_MB": "0.02",
           "METRICS_GZIP_AFTER": "1", "METRICS_RETENTION": "60"}
    run = Run()
    run.watching.set()
    started = time.monotonic()
    server = Server(data, tmp_path / "serve.log", env={"METRICS_TZ": TZ, "METRICS_MAX_MB": "0.02"})
    rot_out, rot_err = open(tmp_path / "rotate.out", "wb"), open(tmp_path / "rotate.err", "wb")  # noqa: SIM115
    rotator = subprocess.Popen([*CLI, "rotate", "--interval", "0.5"], env={**env, **shifted_clock(AHEAD)},
                               stdout=rot_out, stderr=rot_err)
    status_file = data / ".metrics-ops.status"
    numbers = itertools.count()
    threads = [threading.Thread(target=client, args=(run, server, me, numbers)) for me in (0, 1)]
    threads += [threading.Thread(target=forget_loop, args=(run, env)),
                threading.Thread(target=report_loop, args=(run, env))]
    watcher = threading.Thread(target=watch_rotator, args=(run, rotator))
    passes: set[float] = set()

    def passes_seen() -> int:
        status = read_status(status_file) if status_file.exists() else None
        if status is not None:
            passes.add(status.time)
        return len(passes)

    try:
        for t in [*threads, watcher]:
            t.start()
        until(lambda: time.monotonic() - started > TRAFFIC and passes_seen() >= 3 and run.reports >= 3
              and run.forgets >= len(SEEDED_FORGET) and len(run.forgotten) > len(SEEDED_FORGET)
              or run.failures, LIMIT, "every loop's share of the work")
        run.stop.set()
        for t in threads:
            t.join(LIMIT)
        assert server.stop() == 0, server.log
        # two passes after the last write and the last forget: the last one must succeed
        seen = passes_seen()
        until(lambda: passes_seen() >= seen + 2, 60, "two more passes")
        last = read_status(status_file)
        assert rotator.poll() is None, "the rotator stopped"
    finally:
        run.stop.set()
        run.watching.clear()
        watcher.join(10)
        server.stop()
        rotator.send_signal(signal.SIGTERM)
        rotator.wait(60)
        rot_out.close()
        rot_err.close()
    rotator_err = (tmp_path / "rotate.err").read_text()
    assert rotator.returncode == 0 and "Traceback" not in rotator_err, rotator_err[-3000:]
    assert last.ok, (last, rotator_err[-3000:])
    assert not run.failures, run.failures[:5]
    assert run.tiny_answers and set(run.tiny_answers) == {422}, f"tiny sample_rate answered {run.tiny_answers}"
    assert set(run.answers) == {202}, run.answers
    forgotten = run.forgotten
    assert any(v in forgotten for v in run.stored.values()), "no served visitor was forgotten"
    compressed = [p.name for p in data.glob(f"metrics-{today.isoformat()}.*.jsonl.gz")]
    assert compressed, "the rotator never compressed a shard serve had written"

    # the no-loss oracle: every answered line not forgotten exactly once, every seeded line, every hostile line
    want = Counter({("serve", n, v): 1 for n, v in run.stored.items() if v not in forgotten})
    want.update({("seed", n, v): 1 for n, v in seeded.valid.items() if v not in forgotten})
    want.update({("hostile", n, v): 1 for n, v in seeded.hostile.items()})
    got, raw, long_lines = Counter(), Counter(), 0
    lines = all_lines(data)
    for line in lines:
        if len(line) > 1 << 20:
            long_lines += 1  # a reader that bounds its lines does not hand it on: found below
            continue
        try:
            doc = strict_json(line)
            got[(doc["metadata"]["src"], doc["metadata"]["n"], doc["visitor_id"])] += 1
        except (ValueError, KeyError, TypeError):
            raw[line.encode()] += 1
    maybe = {k for k in got if k[0] == "serve" and k[1] in run.unknown and got[k] == 1}
    assert {k: c for k, c in got.items() if k not in maybe and want[k] != c} == {}, "lines stored once each"
    assert {k for k in want if got[k] != want[k]} == set(), "lines missing"
    assert raw == Counter(seeded.raw_hostile), raw
    assert long_lines <= 1 and _long_line_kept(data, today - timedelta(days=10))
    assert not [line for line in lines if "token=" in line[:1 << 20]], "query strings stored"
    del lines
    served = sum(1 for k in want if k[0] == "serve")
    valid = sum(1 for k in want if k[0] in ("serve", "seed"))

    # report: exactly the valid lines; the hostile ones are damaged lines
    hostile = len(seeded.hostile) + len(seeded.raw_hostile) + 1
    since, yesterday = (today - timedelta(days=30)).isoformat(), (today - timedelta(days=1)).isoformat()
    rc, out, err, peak = measured(["report", "--since", since, "--until", "today", "--no-rollups", "--json"], env)
    run.peak("report", peak)
    assert rc == 0, err
    doc = strict_json(out)
    assert sum(r["events"] for r in doc["rows"]) == valid, (doc["rows"], served)
    assert sum(r["estimate"] for r in doc["rows"]) == pytest.approx(valid)
    assert doc["damaged"] == hostile, doc["notes"]
    # with rollups, the same count for every day (forget recounted the rollups of the days it rewrote)
    per_day = {}
    for flag in ((), ("--no-rollups",)):
        rc, out, err, peak = measured(["report", "--since", since, "--until", yesterday, "--by", "day", "--json",
                                       *flag], env)
        assert rc == 0, err
        per_day[flag] = {r["day"]: r["events"] for r in strict_json(out)["rows"]}
    assert per_day[()] == per_day[("--no-rollups",)]
    rollup = data / "rollups" / f"rollup-{(today - timedelta(days=6)).isoformat()}.json"
    assert rollup.stat().st_size < 1 << 20, f"the rollup of 20,000 event names: {rollup.stat().st_size} bytes"

    # DuckDB over the reading glob: data files only, and the same lines
    duckdb = pytest.importorskip("duckdb")
    strays = [p.name for p in data.iterdir() if fnmatch(p.name, "metrics-*.jsonl*") and parse_name(p.name) is None]
    assert strays == [], "the reading glob matches files that are not data"
    rows = duckdb.connect().sql(
        f"SELECT metadata->>'src', count(*), count(DISTINCT metadata->>'n') FROM read_json("
        f"'{data}/metrics-*.jsonl*', format = 'newline_delimited', ignore_errors = true, "
        "columns = {visitor_id: 'VARCHAR', metadata: 'JSON'}) GROUP BY ALL").fetchall()
    counts = {src: (n, distinct) for src, n, distinct in rows}
    assert counts["seed"] == (valid - served,) * 2 and counts["serve"] == (served,) * 2, counts

    # memory stayed bounded
    print(f"stress: {len(run.stored)} events stored, {len(forgotten)} visitors forgotten by {run.forgets} forgets, "
          f"{run.reports} reports, {len(passes)} passes, {len(compressed)} of today's shards compressed; peak RSS "
          + ", ".join(f"{k} {v:.0f} MB" for k, v in sorted(run.peaks.items())))
    assert run.peaks.keys() >= {"rotate", "report", "forget"}
    assert max(run.peaks.values()) < PEAK_MB, run.peaks


def _long_line_kept(data: Path, day: date) -> bool:
    """The 24 MiB line is still in its day's archive (streamed, never held)."""
    longest = current = 0
    with gzip.open(data / file_name(day, gz=True), "rb") as fh:
        while chunk := fh.read(1 << 20):
            for i, piece in enumerate(chunk.split(b"\n")):
                current = current + len(piece) if i == 0 else len(piece)
                longest = max(longest, current)
    return longest >= LONG - 1
