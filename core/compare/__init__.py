"""Comparing two model trees: reading them (local or streamed), exclusions, and the two-version compare."""
