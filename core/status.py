"""The three verdicts of a check and the exit status each one gives, for every part of the project.

``PASSED`` (0): the run model, the registry model and the seal agree. ``FAILED`` (1): the check ran and
found differences (or a seal that proves nothing). ``ERROR`` (2): the check could not be carried out.
"""

from __future__ import annotations

PASSED = "PASSED"
FAILED = "FAILED"
ERROR = "ERROR"
STATUSES = (PASSED, FAILED, ERROR)
EXIT_CODES = {PASSED: 0, FAILED: 1, ERROR: 2}
