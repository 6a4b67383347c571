"""Seals: manifests, their digests, and signed seals in the OpenSSF model-signing format with their store."""
