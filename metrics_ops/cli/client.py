"""client: print the browser script (or its ES module, or its types) for operators who host it themselves."""

from __future__ import annotations

import click

from metrics_ops.cli.common import pass_invocation, shared_options


@click.command(short_help="Print the browser script (metrics.js) to host it yourself.")
@click.option("--module", "kind", flag_value="module", help="The ES module (metrics.mjs) for bundlers.")
@click.option("--types", "kind", flag_value="types", help="The TypeScript declarations (metrics.d.ts).")
@shared_options
@pass_invocation
def client(run, kind):
    """Print the browser script: page views and events, sampled on the client, no cookies, GPC/DNT honoured.

    serve answers the same bytes at GET /metrics.js (and the module at /metrics.mjs). With --json: the file's
    name, content type, size, gzipped size and ETag instead of its text.

    \b
    Examples:
      metrics-ops client > public/metrics.js
      # in the page: <script defer src="/metrics.js" data-sample-rate="0.25">
      metrics-ops client --module > src/lib/metrics.mjs
      metrics-ops client --types > src/lib/metrics.d.ts
      metrics-ops client --json                # size and ETag
    """
    from metrics_ops.client import client_file

    out = run.output()
    f = client_file(kind or "script")
    if out.json:
        out.document(f.summary())
    else:
        click.echo(f.body.decode("utf-8"), nl=False)
