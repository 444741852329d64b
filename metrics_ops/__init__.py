"""metrics-ops: the operational side of a privacy-friendly behaviour-analytics pipeline."""

__version__ = "0.1.0"
