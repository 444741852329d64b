"""metrics-ops: the operational side of a privacy-friendly behaviour-analytics pipeline."""

__version__ = "0.1.0"
#: the date of this release: man pages carry it (or SOURCE_DATE_EPOCH), never the build day
RELEASE_DATE = "2026-11-25"
