"""ratelimit-probe (alias probe): bounded bursts at the edge, checked against nginx's limit_req."""

from __future__ import annotations

import os

import click

from metrics_ops.cli.common import Failure, declares, output_options, pass_invocation
from metrics_ops.exitcodes import ExitCode


@declares(exits=(ExitCode.FAILURE, ExitCode.UNREACHABLE), env=("NO_COLOR", "XDG_STATE_HOME"))
@click.command("ratelimit-probe", short_help="Prove the edge's rate limit with a burst (alias: probe).")
@click.argument("url")
@click.option("--requests", "-n", "n_requests", type=click.IntRange(1, 10_000), default=20, show_default=True,
              help="Requests to send (at most 10000).")
@click.option("--concurrency", "-c", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Keep-alive connections sending at once; 1 sends back-to-back in order.")
@click.option("--rate", type=click.FloatRange(0.1, 10_000), default=None, metavar="R",
              help="Open loop: send R requests per second whatever the answers (needs --duration).")
@click.option("--duration", type=click.FloatRange(0.01, 600), default=None, metavar="S",
              help="Open loop: for S seconds (R x S requests, at most 10000).")
@click.option("--timeout", type=click.FloatRange(0.1, 600), default=30, show_default=True,
              help="Hard limit for the whole probe in seconds.")
@click.option("--body", default=None, metavar="JSON|@FILE",
              help="Request body (default: an event like a browser's, event ratelimit_probe, marked as a test run).")
@click.option("--content-type", default="application/json", show_default=True, help="Content-Type of the body.")
@click.option("--expect-rate", type=click.FloatRange(0.001, 1_000_000), default=None, metavar="R",
              help="nginx limit_req rate in r/s, to predict which requests must pass (with --expect-burst).")
@click.option("--expect-burst", type=click.IntRange(0, 1_000_000), default=None, metavar="N",
              help="nginx limit_req burst.")
@click.option("--nodelay", is_flag=True,
              help="The location uses nodelay (assumed unless --delay is given; deploy/edge/nginx.conf does).")
@click.option("--delay", "delay_n", type=click.IntRange(0, 1_000_000), default=None, metavar="N",
              help="The location uses delay=N (0: plain burst=, every excess request is queued).")
@click.option("--tolerance", type=click.IntRange(0, 10_000), default=1, show_default=True,
              help="Requests the observed pass count (and first 429 when sequential) may differ by.")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the per-request record (send order) to this CSV file.")
@output_options
@pass_invocation
def ratelimit_probe(run, url, n_requests, concurrency, rate, duration, timeout, body, content_type, expect_rate,
                    expect_burst, nodelay, delay_n, tolerance, csv_path):
    """Fire a bounded burst at the edge and check it against nginx's limit_req algorithm.

    Sequential sends compare the pass count and the index of the first 429 with the model; concurrent and
    open-loop sends compare the pass count (the server's order differs from the send order). Exit 1 on a
    mismatch beyond --tolerance, 5 when the URL cannot be connected to or answers nothing.

    \b
    Examples:
      metrics-ops probe http://127.0.0.1:8080/api/metrics/event \\
          --requests 20 --expect-rate 5 --expect-burst 10
      metrics-ops probe URL -n 20 -c 20 --expect-rate 5 --expect-burst 10 -q
      metrics-ops probe URL --rate 20 --duration 1 --csv probe.csv \\
          --expect-rate 5 --expect-burst 10
    """
    from metrics_ops import ratelimit as rl
    from metrics_ops import testrun

    out = run.output()
    if (rate is None) != (duration is None):
        raise Failure("--rate and --duration go together (an open loop of R requests per second for S seconds)",
                      ExitCode.USAGE)
    if nodelay and delay_n is not None:
        raise Failure("--nodelay and --delay exclude each other (nginx takes one of them)", ExitCode.USAGE)
    if (expect_rate is None) != (expect_burst is None):
        raise Failure("--expect-rate and --expect-burst go together", ExitCode.USAGE)
    from metrics_ops.httpclient import Target

    try:
        Target.parse(url)
    except ValueError as exc:
        raise Failure(f"URL {exc}", ExitCode.USAGE) from None
    payload = _body(body)
    if csv_path and not os.path.isdir(os.path.dirname(os.path.abspath(csv_path))):  # said before the burst is sent
        raise Failure(f"--csv {csv_path}: directory {os.path.dirname(os.path.abspath(csv_path))} does not exist",
                      ExitCode.USAGE)
    if rate is not None and rate * duration > rl.MAX_REQUESTS:
        raise Failure(f"--rate {rate:g} x --duration {duration:g} is over {rl.MAX_REQUESTS} requests", ExitCode.USAGE)
    delay = rl.NODELAY if delay_n is None else float(delay_n)
    if expect_rate is not None:
        warning = rl.recent_probe_warning(url, expect_rate, expect_burst)
        if warning:
            out.warn(warning)
    from metrics_ops.httpclient import Unreachable

    try:
        result = rl.run_probe(url, requests=n_requests, concurrency=concurrency, rate=rate, duration=duration,
                              timeout=timeout, body=payload, content_type=content_type)
    except ValueError as exc:
        raise Failure(str(exc), ExitCode.USAGE) from None
    except Unreachable as exc:
        raise Failure(str(exc), ExitCode.UNREACHABLE) from None
    rl.remember_probe(url)
    rl.summarize(result, expect_rate=expect_rate, expect_burst=expect_burst, delay=delay, tolerance=tolerance)
    csv_problem = _write_csv(result, csv_path) if csv_path else None
    for w in result.warnings:
        out.warn(w)
    if result.run_id and not out.json:
        out.warn(testrun.describe("probe", result.run_id))
    if out.json:
        doc = result.to_dict()
        if doc["expectation"]:
            doc["expectation"].pop("decisions")
        out.document(doc)
    elif not (out.quiet and result.ok):
        _render(out, result)
    if csv_problem is not None:
        raise Failure(csv_problem)
    if not result.ok:
        e = result.expectation
        out.error(f"mismatch: {result.passed} passed (model: {e['predicted_passed']})"
                  + (f", first 429 at {_nth(result.first_limited)} (model: {_nth(e['predicted_first_limited'])})"
                     if result.mode == "sequential" else "") + f", tolerance {e['tolerance']}")
        raise click.exceptions.Exit(ExitCode.FAILURE)


def _write_csv(result, path: str) -> str | None:
    """Write the per-request record; the problem in one line when it cannot be written (after the results)."""
    try:
        result.write_csv(path)
    except OSError as exc:
        return f"--csv {path}: cannot write it: {exc.strerror or exc}"
    return None


def _body(body: str | None) -> bytes | None:
    """--body JSON or @FILE -> the bytes to send (None: the default event)."""
    if body is None or not body.startswith("@"):
        return None if body is None else body.encode()
    from pathlib import Path

    try:
        return Path(body[1:]).read_bytes()
    except OSError as exc:
        raise Failure(f"--body {body}: {exc.strerror}", ExitCode.USAGE) from None


def _nth(n: int | None) -> str:
    return "none" if n is None else f"#{n}"


def _render(out, r) -> None:
    lat = r.latency_ms
    rows = [
        ("requests", f"{len(r.records)} {r.mode} in {r.seconds:.2f} s ({r.send_rate:g} r/s sent)"),
        ("statuses", ", ".join(f"{'error' if s == 0 else s}: {n}" for s, n in r.statuses.items())),
        ("passed (2xx)", r.passed),
        ("limited (429)", r.limited),
        ("first 429", f"#{r.first_limited}" if r.first_limited else "none"),
        ("latency p50 / p95 / p99", " / ".join(f"{lat.get(k, 0):.1f} ms" for k in ("p50", "p95", "p99"))),
        ("immediate / delayed", f"{r.immediate} / {r.delayed}"),
    ]
    if r.expectation:
        e = r.expectation
        how = "nodelay" if e["nodelay"] else f"delay={e['delay']:g}"
        rows += [
            ("model", f"rate={e['rate']:g}r/s burst={e['burst']} {how}"),
            ("model: passed", e["predicted_passed"]),
            ("model: first 429", f"#{e['predicted_first_limited']}" if e["predicted_first_limited"] else "none"),
            ("model: delayed", e["predicted_delayed"]),
            ("verdict", f"{'MATCH' if e['match'] else 'MISMATCH'} (compared: {', '.join(e['compared'])}; "
                        f"tolerance {e['tolerance']})"),
        ]
    out.table(f"rate-limit probe of {r.url}", ("measure", "value"), rows)
