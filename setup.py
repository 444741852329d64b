"""The one C extension, metrics_ops._linescan (the cold report's line counter, see metrics_ops/_linescan.c);
everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("metrics_ops._linescan",
                             ["metrics_ops/_linescan.c", "metrics_ops/_linejson.c", "metrics_ops/_linetable.c"],
                             depends=["metrics_ops/_linescan.h"], extra_compile_args=["-O2"])])
