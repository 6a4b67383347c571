"""Transitions the guard approved itself, so that their ``MODEL_VERSION_TRANSITIONED_STAGE`` is ignored.

Approving a transition request makes the workspace fire ``MODEL_VERSION_TRANSITIONED_STAGE`` for the
same version and stage. That version was validated a moment ago: validating it again would post a
second comment. The worker records the approval under ``GUARD_DATA_DIR`` just before approving; the
listener claims the record when the matching event arrives and answers it as ignored. A record
nobody claims (the approval failed, the webhook does not send transitions) expires.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from core.registry.stages import canonical_stage

#: how long an approval waits for its event; workspaces deliver within seconds
MAX_AGE_S = 3600.0


def _path(data_dir: Path | str, model: str, version: str, stage: str | None) -> Path:
    key = f"{model}|{version}|{canonical_stage(stage) or stage}"
    return Path(data_dir) / "own-approvals" / (hashlib.sha256(key.encode()).hexdigest() + ".json")


def record(data_dir: Path | str, model: str, version: str, stage: str | None) -> None:
    """Note that the guard is about to approve ``model`` ``version``'s move to ``stage``."""
    path = _path(data_dir, model, str(version), stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{time.time_ns()}.tmp")
    tmp.write_text(json.dumps({"model": model, "version": str(version), "stage": stage, "at": time.time()}))
    tmp.replace(path)


def claim(data_dir: Path | str, model: str, version: str, stage: str | None,
          now: float | None = None) -> bool:
    """True (once) when the guard approved this very transition within :data:`MAX_AGE_S`."""
    path = _path(data_dir, model, str(version), stage)
    try:
        at = float(json.loads(path.read_text()).get("at", 0))
        path.unlink()
    except (OSError, ValueError):
        return False
    return ((time.time() if now is None else now) - at) <= MAX_AGE_S
