"""The former import target ``metrics_ops.wsgi:app``, kept for existing server configurations.

New configurations use the factory: ``metrics_ops.serve.wsgi:create_app`` (see that module).
"""

from metrics_ops.serve.wsgi import create_app  # noqa: F401  (the signal reset there runs first)


def __getattr__(name: str):
    from metrics_ops.serve import wsgi

    return getattr(wsgi, name)
