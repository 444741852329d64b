"""sample-test: the sampling table, simulated or live."""

from __future__ import annotations

import click

from metrics_ops.cli.common import Failure, data_dir_problem, declares, pass_invocation, shared_options
from metrics_ops.exitcodes import ExitCode


@declares(exits=(ExitCode.FAILURE, ExitCode.INCONCLUSIVE, ExitCode.UNREACHABLE),
          settings=("sample_rates", "sample_key"), env=("NO_COLOR",))
@click.command("sample-test", short_help="Prove the sampling rates (simulated or live).")
@click.option("--client-rate", "client_sample_rate", type=float, default=None, metavar="RATE",
              help="The browser's rate (VITE_METRICS_SAMPLE_RATE; env METRICS_CLIENT_SAMPLE_RATE).")
@click.option("--server-rate", "sample_rate", type=float, default=None, metavar="RATE",
              help="The server's rate (env METRICS_SAMPLE_RATE).")
@click.option("--mode", "sample_mode", type=click.Choice(["random", "visitor"], case_sensitive=False), default=None,
              help="serve's sampling mode (env METRICS_SAMPLE_MODE); either way the browser's per-visitor "
                   "stage (metrics.js) and serve compose to client x server.")
@click.option("--events", type=click.IntRange(1, 10_000_000), default=None,
              help="Events per row (default 10000 simulated, 2000 live).")
@click.option("--seed", type=int, default=None, help="Seed of the simulation, for repeatable tables.")
@click.option("--tolerance", type=click.FloatRange(0.0001, 0.5), default=0.02, show_default=True,
              help="Widest acceptable half-width of the 99.9% interval; wider is INCONCLUSIVE.")
@click.option("--url", default=None, metavar="URL",
              help="Live mode: post events to this serve endpoint (http://127.0.0.1:8001/api/metrics/event).")
@click.option("--timeout", type=click.FloatRange(1, 3600), default=120, show_default=True,
              help="Live mode: stop posting after this many seconds.")
@shared_options
@pass_invocation
def sample_test(run, client_sample_rate, sample_rate, sample_mode, events, seed, tolerance, url, timeout):
    """Prove the sampling rates: simulated through serve's own sampler, or live against serve.

    Exit 0 on PASS, 1 on FAIL, 4 on INCONCLUSIVE (too few events; the output says how many would decide), 5 when
    --url cannot be reached. Rates 0 and 1 are judged exactly. Live, with --data-dir given (before or after the
    command), it also checks that the lines of this run in that directory equal the stored=1 answers.

    \b
    Examples:
      metrics-ops sample-test    # the standard pairs and the configured one
      metrics-ops sample-test --client-rate 0.25 --server-rate 0.5 --seed 1
      metrics-ops sample-test --mode visitor --client-rate 0.25
      metrics-ops sample-test --events 2000 --data-dir ./data \\
          --url http://127.0.0.1:8001/api/metrics/event
    """
    from metrics_ops import sampletest as st

    out = run.output()
    s = run.settings(client_sample_rate=client_sample_rate, sample_rate=sample_rate, sample_mode=sample_mode)
    if url is not None:
        # the store check reads only a --data-dir flag, not METRICS_DIR: serve may be on another machine
        rows, verdict = _live(out, s, url, events or 2000, tolerance, timeout, run.data_dir)
    else:
        given = client_sample_rate is not None or sample_rate is not None
        rows, verdict = _simulated(out, s, events or 10_000, tolerance, seed, given)
    if verdict == st.INCONCLUSIVE and not out.json:
        needed = max(r.needed or 0 for r in rows)
        out.warn(f"INCONCLUSIVE: about {needed} events per row would decide within +-{tolerance:g}")
    if verdict != st.PASS:
        raise click.exceptions.Exit(ExitCode.FAILURE if verdict == st.FAIL else ExitCode.INCONCLUSIVE)


def _live(out, s, url: str, events: int, tolerance: float, timeout: float, live_dir: str | None):
    from pathlib import Path

    from metrics_ops import sampletest as st
    from metrics_ops import testrun
    from metrics_ops.httpclient import Unreachable

    problem = data_dir_problem(s) if live_dir is not None else None
    if problem is not None:  # said before the first event is sent, in every command's words
        raise Failure(problem)
    try:
        result = st.live(url, events, server_rate=s.sample_rate, mode=s.sample_mode, tolerance=tolerance,
                         timeout=timeout, data_dir=Path(live_dir) if live_dir else None)
    except ValueError as exc:
        raise Failure(str(exc), ExitCode.USAGE) from None
    except Unreachable as exc:
        raise Failure(str(exc), ExitCode.UNREACHABLE) from None
    except OSError as exc:  # the data directory went away or cannot be read
        raise Failure(f"cannot read {live_dir}: {exc.strerror or exc}") from None
    rows = [result.row]
    for note in result.notes:
        out.warn(note)
    if out.json:
        out.document({"verdict": st.overall(rows), "live": result.to_dict()})
    else:
        out.warn(testrun.describe("st", result.run_id))
        _table(out, rows, f"live sampling test of {url} ({result.sent} events in {result.seconds:.1f} s)")
        if result.disk_matches is not None and not out.quiet:
            print(f"store: {result.lines_on_disk} lines of this run on disk, {result.stored} answered stored=1"
                  f" -> {'match' if result.disk_matches else 'MISMATCH'}", file=out.stdout)
    return rows, (st.FAIL if result.disk_matches is False else st.overall(rows))


def _simulated(out, s, n: int, tolerance: float, seed: int | None, given: bool):
    from metrics_ops import sampletest as st

    mode = s.sample_mode
    if given:
        pairs = [(s.client_sample_rate, s.sample_rate, "given")]
    else:
        pairs = [(c, v, "standard") for c, v in st.STANDARD_PAIRS]
        pairs.append((s.client_sample_rate, s.sample_rate, "configured"))
    rows = []
    for i, (c, v, kind) in enumerate(pairs):
        row = st.simulate(c, v, n, mode=mode, seed=None if seed is None else seed + i, key=s.sample_key)
        row.label = f"{kind} {row.label}"
        rows.append(st.judge(row, tolerance))
    for j, name in enumerate(sorted(s.sample_rates)):
        row = st.simulate(s.client_sample_rate, s.sample_rate, n, mode=mode, key=s.sample_key, event=name,
                          seed=None if seed is None else seed + 100 + j, server_rates=s.sample_rates)
        row.label = f"event {name}"
        rows.append(st.judge(row, tolerance))
    verdict = st.overall(rows)
    if out.json:
        out.document({"verdict": verdict, "mode": mode, "tolerance": tolerance,
                      "rows": [{**r.__dict__, "observed": r.observed} for r in rows]})
    else:
        _table(out, rows, f"sampling test, {mode} mode, {n} simulated events per row, 99.9% Wilson interval")
    return rows, verdict


def _table(out, rows, title: str) -> None:
    if out.quiet and all(r.verdict == "PASS" for r in rows):
        return
    # One line per row in 80 columns: the pair's label carries the client and server rates, "rate" is the
    # expected share; the events per row are in the title, so on a narrow terminal the counts give way (the
    # observed share says the same); the events an INCONCLUSIVE row needs are in the line below the table.
    out.table(title, ("pair", "rate", "events", "kept", "observed", "99.9% interval", "verdict"),
              [(r.label, f"{r.expected:.4g}", r.events, r.kept, f"{r.observed:.4f}",
                "exact" if r.low == r.high else f"[{r.low:.4f}, {r.high:.4f}]", r.verdict) for r in rows],
              ("left",) + ("right",) * 4 + ("left", "left"),
              whole=("rate", "events", "kept", "observed", "99.9% interval", "verdict"),  # a long event name wraps
              optional={"events": "", "kept": "kept: observed x events"})
