"""serve's counters: their names (the order is the state file's layout) and what each one counts.

The shared state file stores them (:mod:`metrics_ops.serve.shared`), the exposition prints them
(:mod:`metrics_ops.serve.exposition`); both take the names from here, so adding a counter is one line.
"""

from __future__ import annotations

#: name -> help text; the order is the layout of the counters in the state file: append, never reorder
HELP: dict[str, str] = {
    "received": "Valid events received (stored + sampled_out + write_errors + low_space).",
    "stored": "Events appended to the JSONL store.",
    "sampled_out": "Valid events dropped by server-side sampling (answered 202, stored=0).",
    "write_errors": "Valid, sampled-in events that could not be written (answered 202, stored=0).",
    "requests": "HTTP requests to the ingestion routes.",
    "rejected_body_too_large": "", "rejected_bad_json": "", "rejected_bad_encoding": "", "rejected_invalid": "",
    "rejected_content_type": "", "rejected_batch_too_large": "", "rejected_empty_body": "",
    "rejected_duplicate_key": "", "rejected_too_deep": "", "rejected_origin": "", "rejected_incomplete_body": "",
    "low_space": "Valid, sampled-in events not stored because free space was under serve's floor "
                 "(METRICS_SERVE_MIN_FREE_MB; answered 202, stored=0).",
}
REJECTED_HELP = "Requests or batch items refused, by reason."
COUNTERS = tuple(HELP)
INDEX = {name: i for i, name in enumerate(COUNTERS)}


def rejected_counter(code: str, status: int) -> str:
    """The counter of a refusal: its own when the code has one, else ``rejected_invalid`` (every 422 too)."""
    if status == 422:
        return "rejected_invalid"
    name = "rejected_" + code
    return name if name in INDEX else "rejected_invalid"
