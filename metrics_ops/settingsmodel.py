"""The reference check of the settings: a pydantic model built from :data:`metrics_ops.config.FIELDS` and the
checks declared beside them. It decides every set of values the fast check of :mod:`metrics_ops.config` does not
take, and words each error (one line per bad setting: :func:`metrics_ops.origins.format_errors`). It is imported
only then: pydantic would cost every command 0.1 s of start-up."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator
from pydantic_core import PydanticCustomError

from metrics_ops.origins import ConfigError, Origin, format_errors, printable
from metrics_ops.settingfields import AFTER, BEFORE, FIELDS
from metrics_ops.settingvalues import SettingProblem, relation_problems


def _run(checks: list, field: str, value: Any) -> Any:
    try:
        for check in checks:
            value = check(field, value)
    except SettingProblem as problem:
        raise PydanticCustomError(problem.code, problem.template, _shown(problem.ctx)) from None
    return value


def _shown(ctx: dict[str, Any] | None) -> dict[str, Any] | None:
    """A message's context with its text escaped: pydantic cannot render a message that holds a byte the
    environment could not decode (``~\\udcff``), and would end in a traceback."""
    return ctx and {k: printable(v) if isinstance(v, str) else v for k, v in ctx.items()}


def _before(cls, value, info):  # info: pydantic's ValidationInfo
    return _run(BEFORE[info.field_name], info.field_name, value)


def _after(cls, value, info):
    return _run(AFTER.get(info.field_name, ()), info.field_name, value)


@cache
def model() -> type[BaseModel]:
    """The pydantic model of every setting (built once per process)."""
    fields = {}
    for name, spec in FIELDS.items():
        kwargs: dict[str, Any] = {"description": spec.description, **spec.bounds()}
        if spec.default_factory is not None:
            kwargs["default_factory"] = spec.default_factory
        else:
            kwargs["default"] = spec.default
        if spec.finite:
            kwargs["allow_inf_nan"] = False
        fields[name] = (spec.annotation, Field(**kwargs))
    return create_model(
        "Settings",
        __config__=ConfigDict(extra="ignore", validate_default=True),
        __validators__={
            "_before": field_validator("*", mode="before")(_before),
            "_after": field_validator("*")(_after),
        },
        **fields,
    )


def reference_values(values: dict[str, Any], origins: dict[str, Origin], secrets: frozenset[str] = frozenset()
                     ) -> dict[str, Any]:
    """Every setting's value as the model checks ``values``; a :class:`ConfigError` (one line per bad setting,
    named as ``origins`` says it was given, the value of a setting in ``secrets`` never shown) for anything
    wrong."""
    try:
        model_ = model()
        checked = model_.model_validate(values)
        result = {field: getattr(checked, field) for field in FIELDS}
        # the settings that cannot go together, every group of them: checked once every value is right
        if problems := relation_problems(result):
            raise ValidationError.from_exception_data(model_.__name__, [
                {"type": PydanticCustomError("relation", "{why}", _shown({"fields": fields, "why": why})),
                 "loc": (), "input": None} for fields, why in problems])
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, origins, {f: spec.default for f, spec in FIELDS.items()},
                                        secrets)) from None
    return result
