"""Model policies: fitness and safety checks that join the integrity verdict (see docs/policies.md)."""
