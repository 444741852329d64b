"""The ceiling reference of bench/serve_bench.py: granian's WSGI interface with an app that does no work.

Run: granian --interface wsgi --workers 2 --blocking-threads 1 --http 1 --no-ws bench/ceiling_wsgi.py:app
"""


def app(environ, start_response):
    environ["wsgi.input"].read()
    body = b'{"ok":true,"stored":1,"file":"metrics-2026-01-01.jsonl"}'
    start_response("202 Accepted", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
