"""The chart's helm fixture, shared with tests/helm (the image's tests compare against the chart)."""

from __future__ import annotations

from tests.helm.conftest import helm

__all__ = ["helm"]
