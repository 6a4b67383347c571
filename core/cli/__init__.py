"""The two command-line tools, check-model-version and compare-model-versions."""
