"""Check-version core: resolve, fetch, compare and seal MLflow model versions."""
