"""The model registry's stage names (workspace registry; Unity Catalog and open-source aliases have none).

A module of its own with no imports, so the listener's web process can use it without loading MLflow.
"""

from __future__ import annotations

from typing import Any

STAGES = ("None", "Staging", "Production", "Archived")
_BY_LOWER = {stage.lower(): stage for stage in STAGES}


def canonical_stage(value: Any) -> str | None:
    """A stage name in the registry's spelling (``staging`` -> ``Staging``); None when it is not a stage."""
    if not isinstance(value, str):
        return None
    return _BY_LOWER.get(value.strip().lower())
