"""metrics_ops.offsite: the archive record, and the archive step against a real S3 server (SeaweedFS)."""

import json
import os

import pytest

from metrics_ops import offsite
from metrics_ops.layout import ARCHIVED_DIR, scan
from metrics_ops.objectstore import ObjectInfo
from metrics_ops.reading import all_lines

from .helpers import data_file

NAME = "metrics-2026-11-24.jsonl.gz"
SHA = "ab" * 32


def test_the_record_round_trips_hidden_from_readers_and_the_pass(data_dir):
    assert offsite.read_record(data_dir, NAME) is None and offsite.recorded_names(data_dir) == []
    lines = data_file(data_dir / NAME, [{"visitor_id": "v", "event": "e"}], gz=True)
    info = ObjectInfo("p/day=2026-11-24/host=web-1/" + NAME, 42, '"etag-1"', SHA, recorded_size=42)
    written = offsite.write_record(data_dir, NAME, info, now=1_700_000_000.0)
    assert written == offsite.Record(info.key, SHA, 42, "etag-1", 1_700_000_000.0)
    assert offsite.read_record(data_dir, NAME) == written
    assert offsite.recorded_names(data_dir) == [NAME]
    assert written.matches(SHA, 42) and not written.matches(SHA, 43) and written.same_object(info)
    # the record is outside the reading glob and outside what a pass lists as data or unknown
    listing = scan(data_dir, data_dir / "metrics.jsonl")
    assert [f.name for f in listing.files] == [NAME] and listing.unknown == []
    assert all_lines(data_dir) == lines
    assert sorted(os.listdir(data_dir / ARCHIVED_DIR)) == [NAME + ".json"]  # no temp file left behind
    offsite.drop_record(data_dir, NAME)
    offsite.drop_record(data_dir, NAME)  # twice: no error
    assert offsite.read_record(data_dir, NAME) is None


def test_an_unreadable_record_counts_as_none_and_names_are_checked(data_dir):
    (data_dir / ARCHIVED_DIR).mkdir()
    (data_dir / ARCHIVED_DIR / (NAME + ".json")).write_text("{not json")
    assert offsite.read_record(data_dir, NAME) is None
    (data_dir / ARCHIVED_DIR / (NAME + ".json")).write_text(json.dumps({"key": "k"}))
    assert offsite.read_record(data_dir, NAME) is None
    with pytest.raises(ValueError, match="not a compressed data file name"):
        offsite.read_record(data_dir, "metrics-2026-11-24.jsonl")  # plain files are never archived
    with pytest.raises(ValueError, match="no sha256"):
        offsite.write_record(data_dir, NAME, ObjectInfo("k", 1, "e"))
