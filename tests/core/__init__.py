"""Tests of the check-version core (core/)."""
