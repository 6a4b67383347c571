"""``make demo``'s policy act: intact files, a verified seal, and still FAILED, because the model is a pickle.

The local stack runs with ``deploy/policy.example.yaml``, which denies the pickle format. A custom
``mlflow.pyfunc.PythonModel`` is cloudpickled by MLflow (``python_model.pkl``) unless it is logged as
models-from-code; nobody touches its files, so the comparison and the seal find nothing, and the
policy fails it, naming the file and ``pickle``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from deploy.demo_report import failed_checks, paths_in_report, policy_of, policy_table, say, seal_of

if TYPE_CHECKING:
    from deploy.demo import Demo

PICKLED_FILE = "python_model.pkl"
CREATED_EVENT = "model_version.created"
ALIAS_EVENT = "model_version_alias.created"


def log_pickled_model(demo: Demo) -> str:
    """Log the demo's classifier wrapped in a custom PythonModel (cloudpickled) and register it."""
    import mlflow
    import mlflow.pyfunc

    class Classifier(mlflow.pyfunc.PythonModel):  # defined here: cloudpickle stores it by value
        def __init__(self, model: Any) -> None:
            self.model = model

        def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
            return self.model.predict(model_input)

    with mlflow.start_run(run_name="pickled-python-model"):
        info = mlflow.pyfunc.log_model(name="model", python_model=Classifier(demo.model),
                                       registered_model_name=demo.name)
    return str(info.registered_model_version)


def pickled_model(demo: Demo) -> bool:
    """Act 4: an untouched, sealed version whose model is a pickle: FAILED by the policy, seal verified."""
    version = log_pickled_model(demo)
    demo.versions["pickled"] = version
    say(f"registered {demo.name} v{version} (a custom PythonModel: MLflow cloudpickles it into "
        f"{PICKLED_FILE}); waiting for the listener to seal it ...")
    created = demo.wait_for_verdict(version, CREATED_EVENT)
    say(f"  sealed; its creation check: {created['status']}")
    say("setting alias 'challenger' (nobody touched its files) ...")
    row = demo.set_alias("challenger", version)
    named = paths_in_report(row.get("report"))
    intact = "intact (no difference from the run model or the seal)"
    say(f"  files:    {'differ: ' + ', '.join(named) if named else intact}")
    seal = seal_of(row)
    say(f"  seal:     {seal.get('reason') or seal.get('kind') or '(not checked)'}")
    policy = policy_of(row)
    say(f"  policy:   {policy.get('status', '(none applied: is GUARD_POLICY set?)')}")
    for line in policy_table(policy):
        say(f"            {line}")
    failed = " ".join(str(c.get("reason", "")) for c in failed_checks(policy))
    caught = PICKLED_FILE in failed and "pickle" in failed.replace(PICKLED_FILE, "")
    if not caught:
        say(f"unexpected: the policy does not fail {PICKLED_FILE} as a pickle")
    return row["status"] == "FAILED" and not named and seal.get("kind") == "verified" and caught
