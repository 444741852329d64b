"""The schema's fast path (metrics_ops/eventschema.py) against the reference path (events.parse_body,
validate_event, encode_record): the same status, code, field and message for every body, the same stored bytes.

EXPECTED_* were captured by posting each hostile body to the app of 74df433 (before the schema); there, a
timestamp of 400 digits raised OverflowError (a 500): it is a 422 bad_timestamp now, like 1e400; and a metadata
key with a lone surrogate raised TypeError (a 500) as the answer named it: its field is \\u-escaped now.
"""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metrics_ops import eventschema
from metrics_ops.config import load_settings
from metrics_ops.events import Problem, encode_record, parse_body, validate_event
from metrics_ops.sampling import Sampler
from metrics_ops.serve import make_app

from .wsgi_client import call

EVENT, BATCH = "/api/metrics/event", "/api/metrics/events"
NOW = 1764072000.5
RECEIVED = "2025-11-25T12:00:00.500000Z"  # the receive time of NOW
SAMPLER = Sampler(1.0, rates={"click": 0.5, "e": 0.25}, rng=lambda: 0.0)  # keeps every event; rates vary by name
G = '"visitor_id":"v1","event":"e"'


def ev(extra: str) -> bytes:
    return ("{" + G + extra + "}").encode()


HOSTILE = [
    b"", b"  \n", b"{", b"[", b"null", b"1", b'"s"', b"[]", b"{}", b"true",
    b"\xef\xbb\xbf{" + G.encode() + b"}",                      # BOM
    b'{"visitor_id":"v\xff","event":"e"}',                      # not UTF-8
    b'{"visitor_id":"v1","event":"e","metadata":{"s":"\xed\xa0\x80"}}',  # an encoded surrogate
    ev(',"metadata":{"s":"a\\ud800b"}'),                        # lone surrogate escape
    ev(',"metadata":{"s":"\\udc00"}'),
    ev(',"metadata":{"s":"\\ud83d\\ude00"}'),                   # a valid pair: accepted
    ev(',"metadata":{"s":"a\\u0000b"}'), ev(',"metadata":{"s":"a\\nb"}'), ev(',"metadata":{"s":"a\x7fb"}'),
    ev(',"metadata":{"a\\tb":1}'), ev(',"metadata":{"k\x7f":1}'),
    b'{"visitor_id":"v1","event":"e","metadata":{"s":"a\x01b"}}',  # a raw control character
    ev(',"metadata":{"s":"' + "x" * 1024 + '"}'), ev(',"metadata":{"s":"' + "x" * 1025 + '"}'),
    ev(',"metadata":{"s":"' + "\u00e9" * 512 + '"}'), ev(',"metadata":{"s":"' + "\u00e9" * 513 + '"}'),
    ev(',"metadata":{"' + "k" * 1025 + '":1}'), ev(',"metadata":{"' + "k" * 300 + '":1}'),
    b'{"visitor_id":"' + b"a" * 128 + b'","event":"' + b"e" * 64 + b'"}',
    b'{"visitor_id":"' + b"a" * 129 + b'","event":"e"}', b'{"visitor_id":"v1","event":"' + b"e" * 65 + b'"}',
    b'{"visitor_id":"v\\u0031","event":"e"}', b'{"visitor_id":"v1","event":"e\\u003ax"}',
    ev(',"metadata":{"a":{"b":{"c":{"d":1}}}}'), ev(',"metadata":{"a":{"b":{"c":{"d":{}}}}}'),
    ev(',"metadata":{"a":[[[[]]]]}'), ev(',"metadata":{"a":[[[1]]]}'),
    b"[" * 5000 + b"]" * 5000, ev(',"metadata":' + "[" * 3000 + "]" * 3000),
    ev(',"metadata":{' + ",".join(f'"k{i}":{i}' for i in range(50)) + "}"),
    ev(',"metadata":{' + ",".join(f'"k{i}":{i}' for i in range(51)) + "}"),
    ev(',"metadata":{"l":[' + ",".join("1" * 1 for _ in range(49)) + "]}"),
    ev(',"metadata":{"l":[' + ",".join("1" for _ in range(50)) + "]}"),
    b'{"visitor_id":"v1","event":"e","visitor_id":"v2"}', b'{"visitor_id":"v1","event":"e","event":"e"}',
    ev(',"metadata":{"k":1,"k":2}'), ev(',"metadata":{"k":"a:b","k":"c"}'), ev(',"metadata":{"a":{"k":1,"k":1}}'),
    ev(',"extra":{"k":1,"k":2}'), ev(',"metadata":{"k":1,"\\u006b":2}'), ev(',"metadata":{"k:":1,"k:":2}'),
    ev(',"metadata":{"n":9007199254740992}'), ev(',"metadata":{"n":9007199254740993}'),
    ev(',"metadata":{"n":-9007199254740992}'), ev(',"metadata":{"n":-9007199254740993}'),
    ev(',"metadata":{"n":1' + "0" * 30 + "}"), ev(',"metadata":{"n":1' + "0" * 5000 + "}"),
    ev(',"metadata":{"n":1e308}'), ev(',"metadata":{"n":1e309}'), ev(',"metadata":{"n":-1e400}'),
    ev(',"metadata":{"n":5e-324}'), ev(',"metadata":{"n":1e-400}'), ev(',"metadata":{"n":-0.0}'),
    ev(',"metadata":{"n":0.1000000000000000055511151231257827}'), ev(',"metadata":{"n":1.2345678901234567e+17}'),
    ev(',"metadata":{"n":NaN}'), ev(',"metadata":{"n":Infinity}'), ev(',"metadata":{"n":-Infinity}'),
    ev(',"metadata":{"n":01}'), ev(',"metadata":{"n":1.}'), ev(',"metadata":{"n":.5}'), ev(',"metadata":{"n":+1}'),
    ev(',"metadata":{"b":true,"z":null,"f":false}'),
    ev(',"sample_rate":true'), ev(',"sample_rate":1'), ev(',"sample_rate":0'), ev(',"sample_rate":1e-6'),
    ev(',"sample_rate":9.99e-7'), ev(',"sample_rate":1.0000000000000002'), ev(',"sample_rate":"0.5"'),
    ev(',"sample_rate":null'), ev(',"sample_rate":1e400'), ev(',"sample_rate":[0.5]'),
    ev(',"timestamp":true'), ev(',"timestamp":false'), ev(',"timestamp":null'), ev(',"timestamp":1764072000123'),
    ev(',"timestamp":1764072000123.5'), ev(',"timestamp":946684800000'), ev(',"timestamp":946684799999'),
    ev(',"timestamp":4102444800000'), ev(',"timestamp":4102444799999.9'), ev(',"timestamp":1' + "0" * 400),
    ev(',"timestamp":-1' + "0" * 400), ev(',"timestamp":1e400'), ev(',"timestamp":"2026-11-25T12:00:00Z"'),
    ev(',"timestamp":"2026-11-25T13:30:00.25+01:30"'), ev(',"timestamp":"1999-12-31T23:59:59Z"'),
    ev(',"timestamp":"2000-01-01T00:30:00+01:00"'), ev(',"timestamp":"' + "2" * 41 + '"'),
    ev(',"timestamp":"yesterday"'), ev(',"timestamp":"2026-11-25T12:00:00\\u0000"'), ev(',"timestamp":{}'),
    ev(',"metadata":null'), ev(',"metadata":[1]'), ev(',"metadata":"s"'), ev(',"metadata":{}'),
    ev(',"metadata":{"path":"/reset?token=a:b#x:y","w":1}'), ev(',"metadata":{"path":"/a#b?c"}'),
    ev(',"metadata":{"path":["/a?b"],"n":{"path":"/n?x"}}'),
    b'{"event":"e"}', b'{"visitor_id":5,"event":"e"}', b'{"visitor_id":"","event":"e"}',
    b'{"visitor_id":"a b","event":"e"}', b'{"visitor_id":"v1","event":"Page View"}', b'{"visitor_id":"v1"}',
    b'{"visitor_id":"v1","event":null}', b'{"visitor_id":"v1","event":true}', b'{"visitor_id":"v1\n","event":"e"}',
    b'{"visitor_id":"v1\\n","event":"e"}', b'{"visitor_id":"v1","event":"e\\n"}',
    b'{"event":"Bad","visitor_id":5}', ev(',"ip":"203.0.113.9"'), b' {"event":"e","visitor_id":"v1"} \n',
    b'{"visitor_id":"v1","event":"e"}x', b'{"visitor_id":"v1","event":"e",}', b"{'visitor_id':'v1'}",
    ev(',"metadata":{"\\ud800":1}'), ev(',"metadata":{"a":{"k\\udfff":[1]}}'),
]
BATCHES = [
    b"[]", b"{}", b"[" + b",".join([ev("")] * 3) + b"]", b"[" + ev("") + b',{"visitor_id":"a"}]',
    b"[" + ev("") + b"," + ev(',"metadata":{"k":1,"k":2}') + b"]", b"[" + ev("") + b",1,null]",
    b"[" + ev("") + b"," + ev(',"metadata":{"s":"a\\u0000b"}') + b"]", b"[" + b",".join([ev("")] * 51) + b"]",
    b"[" + ev(',"sample_rate":0.25') + b"," + ev(',"timestamp":1764072000123') + b"]",
    b"[" + ev(',"metadata":{"path":"/x?a:b"}') + b"," + ev(',"metadata":{"path":"/y?c:d","k":1,"k":2}') + b"]",
    b"[" + ev(',"timestamp":1' + "0" * 400) + b"]", b"[[" + ev("") + b"]]",
    b"[" + ev(',"metadata":{"n":1' + "0" * 30 + "}") + b"," + ev("") + b"]",
]
EXPECTED_ONE = [
    (400, "empty_body", None), (400, "empty_body", None), (400, "bad_json", None), (400, "bad_json", None),
    (422, "not_object", None), (422, "not_object", None), (422, "not_object", None), (422, "not_object", None),
    (422, "missing", "visitor_id"), (422, "not_object", None), (400, "bad_json", None), (400, "bad_encoding", None),
    (400, "bad_encoding", None), (422, "bad_string", "metadata.s"), (422, "bad_string", "metadata.s"), 202,
    (422, "control_character", "metadata.s"), (422, "control_character", "metadata.s"),
    (422, "control_character", "metadata.s"), (422, "control_character", "metadata.a\tb"),
    (422, "control_character", "metadata.k\x7f"), (400, "bad_json", None), 202, (422, "too_long", "metadata.s"),
    202, (422, "too_long", "metadata.s"),
    (422, "too_long", "metadata." + "k" * 64), 202, 202,
    (422, "invalid", "visitor_id"), (422, "invalid", "event"), 202, 202, 202, (422, "too_deep", "metadata.a.b.c.d"),
    (422, "too_deep", "metadata.a[0][0][0]"), 202, (400, "too_deep", None), (400, "too_deep", None), 202,
    (422, "too_many_keys", "metadata"), 202, (422, "too_many_keys", "metadata"), (400, "duplicate_key", None),
    (400, "duplicate_key", None), (400, "duplicate_key", None), (400, "duplicate_key", None),
    (400, "duplicate_key", None), (400, "duplicate_key", None), (400, "duplicate_key", None),
    (400, "duplicate_key", None), 202, (422, "number_out_of_range", "metadata.n"), 202,
    (422, "number_out_of_range", "metadata.n"), (422, "number_out_of_range", "metadata.n"), (400, "bad_json", None),
    202, (422, "number_out_of_range", "metadata.n"), (422, "number_out_of_range", "metadata.n"), 202, 202, 202, 202,
    202, (400, "bad_json", None), (400, "bad_json", None), (400, "bad_json", None), (400, "bad_json", None),
    (400, "bad_json", None), (400, "bad_json", None), (400, "bad_json", None), 202, (422, "type", "sample_rate"),
    202, (422, "out_of_range", "sample_rate"), 202, (422, "out_of_range", "sample_rate"),
    (422, "out_of_range", "sample_rate"), (422, "type", "sample_rate"), 202, (422, "out_of_range", "sample_rate"),
    (422, "type", "sample_rate"), (422, "bad_timestamp", "timestamp"), (422, "bad_timestamp", "timestamp"), 202,
    202, 202, 202, (422, "bad_timestamp", "timestamp"), (422, "bad_timestamp", "timestamp"), 202,
    (422, "bad_timestamp", "timestamp"), (422, "bad_timestamp", "timestamp"), (422, "bad_timestamp", "timestamp"),
    202, 202, (422, "bad_timestamp", "timestamp"), (422, "bad_timestamp", "timestamp"),
    (422, "bad_timestamp", "timestamp"), (422, "bad_timestamp", "timestamp"), 202,
    (422, "bad_timestamp", "timestamp"), 202, (422, "type", "metadata"), (422, "type", "metadata"), 202, 202, 202,
    202, (422, "missing", "visitor_id"), (422, "type", "visitor_id"), (422, "invalid", "visitor_id"),
    (422, "invalid", "visitor_id"), (422, "invalid", "event"), (422, "missing", "event"), (422, "type", "event"),
    (422, "type", "event"), (400, "bad_json", None), (422, "invalid", "visitor_id"), (422, "invalid", "event"),
    (422, "type", "visitor_id"), 202, 202, (400, "bad_json", None), (400, "bad_json", None),
    (400, "bad_json", None),
    # 74df433: TypeError (a 500) as it wrote the field holding a lone surrogate; now named with a \\u escape
    (422, "bad_string", "metadata.\\ud800"), (422, "bad_string", "metadata.a.k\\udfff"),
]
EXPECTED_BATCH = [
    (422, "empty_batch", None), (422, "not_array", None), (202, ["ok", "ok", "ok"]),
    (202, ["ok", ["missing", "[1].event"]]), (400, "duplicate_key", None),
    (202, ["ok", ["not_object", "[1]."], ["not_object", "[2]."]]),
    (202, ["ok", ["control_character", "[1].metadata.s"]]), (413, "batch_too_large", None), (202, ["ok", "ok"]),
    (400, "duplicate_key", None), (422, [["bad_timestamp", "[0].timestamp"]]), (422, [["not_object", "[0]."]]),
    (202, [["number_out_of_range", "[0].metadata.n"], "ok"]),
]
GOOD = [  # bodies the fast path must take (and store as the reference path does)
    ev(""), ev(',"metadata":{"path":"/pricing","w":1280}'), ev(',"sample_rate":0.25,"timestamp":1764072000123'),
    b'{"visitor_id":"0123456789abcdef0123456789abcdef","event":"page_view","timestamp":1764072000123,'
    b'"sample_rate":1,"metadata":{"path":"/a/b?utm=x:y#z","ref":"se:arch","n":{"l":[1,2.5,null,true]}}}',
    ev(',"timestamp":"2026-11-25T13:30:00.25+01:30","metadata":{"s":"\xc3\xa9\xe2\x80\xa8:"}'),
]


def reference_one(body: bytes, keep_query: bool = False):
    """What the reference path answers: the stored line, or (status, code, field, message)."""
    try:
        event = validate_event(parse_body(body), "", keep_query)
    except Problem as p:
        return p.status, p.code, p.field, p.message
    return encode_record(event, RECEIVED, SAMPLER.rate_for(event["event"]))


def reference_batch(body: bytes, max_batch: int = 50):
    """(status, code, field, message) for the whole batch, or a stored line or refusal per event."""
    try:
        items = parse_body(body)
    except Problem as p:
        return p.status, p.code, p.field, p.message
    if not isinstance(items, list) or not 0 < len(items) <= max_batch:
        return "refused"
    out = []
    for i, item in enumerate(items):
        try:
            event = validate_event(item, f"[{i}].", False)
        except Problem as p:
            out.append((p.status, p.code, p.field, p.message))
            continue
        out.append(encode_record(event, RECEIVED, SAMPLER.rate_for(event["event"])))
    return out


def fast_one(body: bytes, keep_query: bool = False):
    line = eventschema.one(body, keep_query, RECEIVED, SAMPLER.rate_for)
    if line is not None:
        assert line[:2] == tuple(json.loads(line[2])[k] for k in ("visitor_id", "event"))
    return line


class App:
    """The whole app at a fixed clock; ``post`` -> (status, the answer, the lines it stored)."""

    def __init__(self, directory, **more):
        self.dir = directory
        self.app = make_app(load_settings({"dir": str(directory), "max_batch": 50, **more}), sampler=SAMPLER,
                            clock=lambda: NOW)
        self.seen = 0

    def post(self, path: str, body: bytes):
        r = call(self.app, "POST", path, body)
        data = b"".join(p.read_bytes() for p in sorted(self.dir.glob("metrics-*.jsonl")))
        new, self.seen = data[self.seen:], len(data)
        return r.status, r.json, new.splitlines(keepends=True)


def _answer(status: int, reply: dict):
    if "results" in reply:
        return status, ["ok" if r["ok"] else [r["error"]["code"], r["error"]["field"]] for r in reply["results"]]
    return 202 if status == 202 else (status, reply["error"]["code"], reply["error"]["field"])


def test_hostile_bodies_get_the_answers_of_74df433_and_the_reference_lines(tmp_path):
    app = App(tmp_path)
    assert len(HOSTILE) == len(EXPECTED_ONE) and len(BATCHES) == len(EXPECTED_BATCH)
    for body, expected in zip(HOSTILE, EXPECTED_ONE, strict=True):
        status, reply, stored = app.post(EVENT, body)
        assert _answer(status, reply) == expected, body[:200]
        ref = reference_one(body)
        if status == 202:
            assert stored == [ref], body[:200]
        else:
            assert stored == [] and (status, reply["error"]["code"], reply["error"]["field"],
                                     reply["error"]["message"]) == ref
        fast = fast_one(body)
        assert fast is None or fast[2] == ref, body[:200]
    for body, expected in zip(BATCHES, EXPECTED_BATCH, strict=True):
        status, reply, stored = app.post(BATCH, body)
        assert _answer(status, reply) == expected, body[:200]
        ref = reference_batch(body)
        if isinstance(ref, list):
            assert stored == [x for x in ref if isinstance(x, bytes)], body[:200]
        fast = eventschema.batch(body, 50, False, RECEIVED, SAMPLER.rate_for)
        assert fast is None or [line for _v, _e, line in fast] == ref, body[:200]


def test_valid_bodies_take_the_fast_path_and_store_the_reference_bytes():
    for body in GOOD:
        fast = fast_one(body)
        assert fast is not None, body
        assert fast[2] == reference_one(body)
    lines = eventschema.batch(b"[" + b",".join(GOOD) + b"]", 50, False, RECEIVED, SAMPLER.rate_for)
    assert [line for _v, _e, line in lines] == [reference_one(b) for b in GOOD]
    kept = fast_one(GOOD[3], keep_query=True)
    assert kept[2] == reference_one(GOOD[3], keep_query=True) and b"utm=x:y#z" in kept[2]


def test_a_repeated_key_anywhere_is_never_taken_by_the_fast_path():
    for body in (b'{"visitor_id":"v1","event":"e","visitor_id":"v1"}', ev(',"metadata":{"a":{"k":1,"k":1}}'),
                 ev(',"metadata":{"k":"x:y","k":"x:y"}'), ev(',"timestamp":1764072000123,"timestamp":1764072000123'),
                 ev(',"metadata":{"path":"/a?b:c","path":"/a?b:c"}'), ev(',"metadata":{"l":[{"k":1,"k":2}]}')):
        assert fast_one(body) is None
        assert reference_one(body)[:2] == (400, "duplicate_key")
        assert eventschema.batch(b"[" + ev("") + b"," + body + b"]", 50, False, RECEIVED, SAMPLER.rate_for) is None


# -- the property: any body, the fast path never accepts what the reference path refuses or stores differently.
# Mostly valid events (so the fast path takes many), each field now and then hostile.
_specials = st.sampled_from(["\ud800", "\udfff", "\x00", "\x1f", "\x7f", ":", "?", "#", "\"", "\\", "\u00e9",
                             "\u2028", "\U0001f600", "\ufeff", "/"])
nice_texts = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=12)
texts = st.one_of(nice_texts, nice_texts, st.text(st.one_of(st.characters(), _specials), max_size=12),
                  st.text(st.sampled_from("ab:?#\u00e9"), min_size=250, max_size=260))
numbers = st.one_of(st.integers(-(2**54), 2**54), st.sampled_from([2**53, 2**53 + 1, -(2**53), -(2**53) - 1,
                                                                   10**30, 0, -0.0, 1e308, 5e-324]),
                    st.floats(allow_nan=False, allow_infinity=False), st.floats())
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)


class Obj(list):
    """A JSON object as its (key, value) pairs: keys may repeat."""


def _pairs(inner, max_size=5):  # distinct keys: event_objects repeats one now and then
    return st.lists(st.tuples(texts, inner), max_size=max_size, unique_by=lambda kv: kv[0])


values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), _pairs(inner).map(Obj)),
                      max_leaves=20)
wide = st.builds(lambda n: Obj((f"k{i}", i) for i in range(n)), st.integers(45, 55))


def text_of(value, ascii_only: bool) -> str:
    if isinstance(value, Obj):
        return "{" + ",".join(f"{text_of(k, ascii_only)}:{text_of(v, ascii_only)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(text_of(v, ascii_only) for v in value) + "]"
    return json.dumps(value, ensure_ascii=ascii_only)


nice_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.floats(allow_nan=False,
                         allow_infinity=False), nice_texts)
nice_values = st.recursive(nice_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                                 _pairs(inner, 3).map(Obj)), max_leaves=8)
VALID = {  # field -> (a valid value, any value)
    "visitor_id": (st.from_regex(r"[A-Za-z0-9_-]{1,128}", fullmatch=True),
                   st.one_of(st.just("a" * 129), st.just(""), texts, scalars)),
    "event": (st.one_of(st.sampled_from(["e", "click", "page_view", "a:b"]),
                        st.from_regex(r"[a-z0-9_.:-]{1,64}", fullmatch=True)),
              st.one_of(st.just("e" * 65), st.just("Page"), texts, scalars)),
    "timestamp": (st.one_of(st.integers(946684800000, 4102444799999), st.floats(946684800000, 4102444799999),
                            st.sampled_from(["2026-11-25T12:00:00Z", "2026-11-25T13:30:00.25+01:30",
                                             "2099-12-31T23:59"])),
                  st.one_of(st.integers(946684799000, 4102444801000), st.floats(9.4e11, 4.2e12), scalars,
                            st.sampled_from(["1999-12-31T23:59:59Z", "10**400", "2026-13-01", "x" * 41]))),
    "sample_rate": (st.one_of(st.floats(1e-6, 1), st.just(1)),
                    st.one_of(st.floats(0, 1.01), st.sampled_from([9.99e-7, 0, True, "0.5"]), scalars)),
    "metadata": (st.one_of(_pairs(nice_values).map(Obj), st.builds(lambda p, rest: Obj([("path", p), *rest]),
                           st.one_of(nice_texts, st.just("/a/b?x=1:2#f:g")), _pairs(nice_scalars, 3))),
                 st.one_of(_pairs(values).map(Obj), wide, values)),
    "extra": (values, values),  # not stored: the reference path takes it, the fast path leaves it
}


@st.composite
def event_objects(draw) -> Obj:
    names = draw(st.lists(st.sampled_from(["timestamp", "sample_rate", "metadata", "extra"]), unique=True))
    if draw(st.integers(0, 9)) < 9:  # mostly the two required fields
        names = ["visitor_id", "event", *names]
    if draw(st.booleans()):  # in any order
        names = draw(st.permutations(names))
    hostile = draw(st.sampled_from([None, None, *names]))  # at most one field out of the valid
    pairs = Obj((name, draw(VALID[name][name == hostile])) for name in names)
    if pairs and draw(st.integers(0, 9)) == 9:  # a repeated key
        pairs.append(draw(st.sampled_from(pairs)))
    return pairs


def encode(obj, ascii_only: bool) -> bytes:
    text = text_of(obj, ascii_only).replace('"10**400"', "1" + "0" * 400)
    return text.encode("utf-8", "surrogatepass")


bodies = st.one_of(
    st.builds(encode, event_objects(), st.booleans()),
    st.builds(encode, event_objects(), st.booleans()),
    st.builds(encode, st.lists(event_objects(), max_size=4), st.booleans()),
    st.builds(lambda b, pre, post: pre + b + post, st.builds(encode, event_objects(), st.booleans()),
              st.sampled_from([b"", b" ", b"\xef\xbb\xbf", b"\n\t"]), st.sampled_from([b"", b" ", b"\n", b",", b"x"])),
    st.binary(max_size=80),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(body=bodies)
def test_the_fast_path_answers_as_the_reference_path_for_any_body(body):
    ref = reference_one(body)
    fast = fast_one(body)
    if fast is not None:
        assert isinstance(ref, bytes) and fast[2] == ref
    ref_batch = reference_batch(body)
    fast_batch = eventschema.batch(body, 50, False, RECEIVED, SAMPLER.rate_for)
    if fast_batch is not None:
        assert [line for _v, _e, line in fast_batch] == ref_batch


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                   HealthCheck.function_scoped_fixture])
@given(body=bodies)
def test_the_app_answers_and_stores_as_the_reference_path(tmp_path_factory, body):
    app = App(tmp_path_factory.mktemp("diff"))
    status, reply, stored = app.post(EVENT, body)
    ref = reference_one(body)
    if isinstance(ref, bytes):
        assert (status, stored) == (202, [ref])
    else:
        assert stored == [] and (status, *reply["error"].values()) == (ref[0], ref[1], ref[3], ref[2])
    status, reply, stored = app.post(BATCH, body)
    ref = reference_batch(body)
    if isinstance(ref, list):
        assert stored == [x for x in ref if isinstance(x, bytes)]
        assert [r["ok"] or tuple(r["error"].values()) for r in reply["results"]] == [
            True if isinstance(x, bytes) else (x[1], x[3], x[2]) for x in ref]
    elif isinstance(ref, tuple):
        assert stored == [] and (status, *reply["error"].values()) == (ref[0], ref[1], ref[3], ref[2])
