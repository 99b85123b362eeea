"""``schema``: which columns are features and predictions (by default the profile's)."""

from __future__ import annotations

from pydantic import Field, model_validator

from detectors.schema import Schema
from monitor.config.rules import Section, fail

__all__ = ["SchemaConfig"]


class SchemaConfig(Section):
    """Which columns are features and predictions; by default the profile's schema."""

    infer_from_reference: bool = True
    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    prediction: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> SchemaConfig:
        for key in ("numeric", "categorical", "prediction"):
            names = getattr(self, key)
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise fail(key, f"names {dupes} twice; list each column once")
        both = sorted(set(self.numeric) & set(self.categorical))
        if both:
            raise fail("categorical", f"{both} are also listed as numeric; keep one kind")
        if not self.infer_from_reference and not (self.numeric or self.categorical):
            raise fail(
                "infer_from_reference",
                "is false but no columns are listed; list numeric and categorical columns "
                "or set infer_from_reference: true",
            )
        return self

    def to_schema(self) -> Schema | None:
        """The columns written here, or None when the reference's schema is used.

        A prediction column's kind is taken from ``numeric``/``categorical`` when it is
        listed there too, else it is numeric.
        """
        if self.infer_from_reference:
            return None
        pred = set(self.prediction)
        return Schema.build(
            numeric=[n for n in self.numeric if n not in pred],
            categorical=[n for n in self.categorical if n not in pred],
            prediction_numeric=[n for n in self.prediction if n not in self.categorical],
            prediction_categorical=[n for n in self.prediction if n in self.categorical],
        )
