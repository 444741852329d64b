"""The one C extension (metrics_ops/_linescan.c: the cold report's line counter); everything else is in
pyproject.toml."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("metrics_ops._linescan", ["metrics_ops/_linescan.c"], extra_compile_args=["-O2"])])
