"""Model policies: fitness and safety checks that join the integrity verdict (see docs/policies.md).

- :mod:`core.policy.loader`: read and validate a policy file, merge its sections for one version;
- :mod:`core.policy.model`: what a check says (:class:`CheckOutcome`) and the policy's verdict
  (:class:`PolicyResult`);
- :mod:`core.policy.evaluate`: run the checks in the comparison's single read of the files
  (:mod:`core.policy.inspect` observes the read; the checks live in ``checks_files``,
  ``checks_meta`` and ``metrics``).
"""

from core.policy.loader import EffectivePolicy, Policy, PolicyError, load_policy
from core.policy.model import FAIL, PASS, WARN, CheckOutcome, PolicyResult

__all__ = ["FAIL", "PASS", "WARN", "CheckOutcome", "EffectivePolicy", "Policy", "PolicyError", "PolicyResult",
           "load_policy"]
