"""The monitoring mixin: values (``values``) and the generator of rules, Alertmanager
config, dashboards and Kubernetes objects built from them."""

from exporter.mixin.values import (
    SECTION_ANCHORS,
    Input,
    MixinValues,
    Section,
    ValuesError,
    default_values,
    duration_seconds,
    inputs,
    load_values,
    section_thresholds,
    sections,
)

__all__ = [
    "SECTION_ANCHORS",
    "Input",
    "MixinValues",
    "Section",
    "ValuesError",
    "default_values",
    "duration_seconds",
    "inputs",
    "load_values",
    "section_thresholds",
    "sections",
]
