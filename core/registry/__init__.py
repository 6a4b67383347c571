"""Registry access: resolving versions and their locations, stages, reachability, MLflow error mapping."""
