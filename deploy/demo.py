"""`make demo`: watch the guard pass an honest model version, catch a tampered one, and guard `champion`.

Run it while `make run` is up: it reads the addresses that stack was started with from
``$GUARD_DATA_DIR/stack.json`` (``MLFLOW_PORT``/``PORT`` need not be repeated). ``MLFLOW_TRACKING_URI`` and
``GUARD_LISTENER_URL`` override them (any MLflow server whose webhook calls the listener). It needs
scikit-learn (in requirements-dev.txt) and a tracking server whose artifact store is a local folder (the
local stack's is), because act 2 edits a stored model file the way an attacker or an accident would.

The acts (:data:`ACTS`; each is a function of the shared :class:`Demo`, so another is one more entry):

1. An honest version: trains a small scikit-learn model, registers it, sets the alias ``champion`` and
   waits for the verdict of that alias event: PASSED.
2. A tampered file: registers a second version that carries a nested file
   (``code/demo_assets/preprocessing/vocabulary.txt``), waits for it to be sealed, changes that file in
   the artifact store, sets the alias ``challenger``: FAILED, naming the file.
3. ``champion`` moved onto the tampered version: FAILED again, and the guard moves the protected alias
   back to the honest version (``make run`` protects ``champion``). On a stack that does not protect it,
   the demo moves it back itself and says so.
4. A policy failure beside the integrity failure (:mod:`deploy.demo_policy_act`): a custom PythonModel,
   cloudpickled by MLflow, files untouched, gets ``challenger``: the seal verifies, and the verdict is
   FAILED by the policy (``make run`` uses ``deploy/policy.example.yaml``: ``deny: [pickle]``), naming
   ``python_model.pkl``; the policy's table is printed.
5. The alerts (:mod:`deploy.demo_alerts`): one per FAILED verdict, none for a PASSED one, read from the
   stack's local alert receiver.

The honest versions are logged as skops (MLflow's scikit-learn default outside Databricks, named here
so that the starter policy's ``deny: [pickle]`` passes them whatever the default becomes).

Verdicts come from the listener's ``/api/validations`` (event, alias, files) and are shown as the registry
shows them (the version's tags). Exit status 0 when every act came out as expected, 1 otherwise.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlparse

if __package__ in (None, ""):  # run as a script (make demo): import the deploy package from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy.demo_alerts import alerts_for_failed
from deploy.demo_policy_act import pickled_model
from deploy.demo_report import paths_in_report, say

NESTED_FILE = "code/demo_assets/preprocessing/vocabulary.txt"
STACK_FILE = "stack.json"  # written by deploy/local_stack.py while `make run` is up
CREATED_EVENT = "model_version.created"
ALIAS_EVENT = "model_version_alias.created"
FINAL = ("PASSED", "FAILED", "ERROR")
VERDICT_TIMEOUT_S = float(os.environ.get("GUARD_DEMO_TIMEOUT", "180"))


def _reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, ConnectionError, OSError):
        return False


@dataclass
class Demo:
    """What the acts share: the registry, the listener, the model, and the versions made so far."""

    client: Any
    name: str
    ui: str
    listener: str
    model: Any
    example: Any = None  # a few input rows, logged as the input example (MLflow infers the signature)
    alerts: str | None = None  # the stack's local alert receiver (base URL), if it has one
    versions: dict[str, str] = field(default_factory=dict)  # role ("honest", "tampered") -> version
    shown: set[int] = field(default_factory=set)  # ids of the verdicts an act has already used
    verdicts: list[dict[str, Any]] = field(default_factory=list)  # every verdict an act waited for

    def rows(self) -> list[dict[str, Any]]:
        """This model's newest validations, from the listener's /api/validations."""
        url = f"{self.listener}/api/validations?model={quote(self.name)}&limit=50"
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.loads(resp.read())["validations"]

    def mark(self) -> None:
        """Verdicts listed now belong to earlier steps: the next wait looks for a new one."""
        self.shown.update(int(r["id"]) for r in self.rows())

    def wait_for_verdict(self, version: str, trigger: str, alias: str | None = None) -> dict[str, Any]:
        """The first new verdict on ``version`` for ``trigger`` (and ``alias``), once it is on the version."""
        deadline = time.monotonic() + VERDICT_TIMEOUT_S
        while time.monotonic() < deadline:
            for row in sorted(self.rows(), key=lambda r: int(r["id"])):
                if (int(row["id"]) not in self.shown and row["version"] == version
                        and row["trigger"] == trigger and row.get("alias") == alias and row["status"] in FINAL
                        and row.get("publish_status") in ("PUBLISHED", "FAILED")):
                    self.shown.add(int(row["id"]))
                    self.verdicts.append(row)
                    return row
            time.sleep(0.5)
        about = f"{trigger}{' @' + alias if alias else ''}"
        raise TimeoutError(f"no verdict on {self.name} v{version} for {about} within "
                           f"{VERDICT_TIMEOUT_S:.0f}s; is `make run` up and the webhook registered?")

    def register(self, run_name: str, code_paths: list[str] | None = None) -> str:
        """Log the model in a new run, register it under the demo's name; returns the version."""
        import mlflow
        import mlflow.sklearn

        with mlflow.start_run(run_name=run_name):
            info = mlflow.sklearn.log_model(self.model, name="model", registered_model_name=self.name,
                                            code_paths=code_paths, serialization_format="skops",
                                            input_example=self.example)
        return str(info.registered_model_version)

    def set_alias(self, alias: str, version: str) -> dict[str, Any]:
        """Point ``alias`` at ``version``, wait for the guard's verdict on that alias event, and show it."""
        self.mark()
        self.client.set_registered_model_alias(self.name, alias, version)
        row = self.wait_for_verdict(version, ALIAS_EVENT, alias)
        self.show(row)
        return row

    def show(self, row: dict[str, Any]) -> None:
        """Print a verdict the way the registry shows it (the version's tags), and what it answered."""
        version = row["version"]
        tags = dict(self.client.get_model_version(self.name, version).tags)
        say(f"  verdict:  {tags.get('validation.status')}")
        say(f"  summary:  {tags.get('validation.summary', '')}")
        say(f"  event:    {row['trigger']}{'  (@' + row['alias'] + ')' if row.get('alias') else ''}")
        if tags.get("validation.seal"):
            say(f"  seal:     sha256 {tags['validation.seal'][:16]}…")
        say(f"  see it:   {self.ui}/#/models/{quote(self.name)}/versions/{version}")


def local_path(uri: str) -> Path | None:
    """The folder behind a local artifact URI (``/path`` or ``file://``), else None."""
    if uri.startswith("file://"):
        return Path(unquote(urlparse(uri).path))
    if uri.startswith("/"):
        return Path(uri)
    return None


def honest_version(demo: Demo) -> bool:
    """Act 1: an honest version gets ``champion``: PASSED."""
    version = demo.register("honest")
    demo.versions["honest"] = version
    say(f"registered {demo.name} v{version}; setting alias 'champion' ...")
    row = demo.set_alias("champion", version)
    return row["status"] == "PASSED"


def tampered_file(demo: Demo) -> bool:
    """Act 2: a version whose file changes after it was sealed gets ``challenger``: FAILED, naming it."""
    with tempfile.TemporaryDirectory() as tmp:
        assets = Path(tmp) / "demo_assets"
        (assets / "preprocessing").mkdir(parents=True)
        (assets / "__init__.py").write_text("")
        (assets / "preprocessing" / "vocabulary.txt").write_text("setosa\nversicolor\nvirginica\n")
        version = demo.register("to-be-tampered", code_paths=[str(assets)])
    demo.versions["tampered"] = version
    say(f"registered {demo.name} v{version}; waiting for the listener to seal it ...")
    demo.show(demo.wait_for_verdict(version, CREATED_EVENT))
    stored = local_path(demo.client.get_model_version_download_uri(demo.name, version))
    target = stored / NESTED_FILE if stored else None
    if target is None or not target.is_file():
        say(f"The model files of v{version} are not in a local folder here ({stored}); this act needs the "
            "local stack's artifact store. Skipping it.")
        return True
    with target.open("a") as fh:
        fh.write("poisoned-label\n")
    say(f"changed {NESTED_FILE} in the artifact store")
    say("setting alias 'challenger' ...")
    row = demo.set_alias("challenger", version)
    named = paths_in_report(row.get("report"))
    say(f"  files:    {', '.join(named) or '(none named)'}")
    caught = any(path.endswith(NESTED_FILE) for path in named)
    if not caught:
        say(f"unexpected: the verdict does not name {NESTED_FILE}")
    return row["status"] == "FAILED" and caught


def champion_on_tampered(demo: Demo) -> bool:
    """Act 3: ``champion`` set on the tampered version: FAILED, and the alias goes back to the honest one."""
    honest, tampered = demo.versions.get("honest"), demo.versions.get("tampered")
    if not honest or not tampered:
        say("skipped: acts 1 and 2 did not both make a version")
        return False
    say(f"setting alias 'champion' on the tampered v{tampered} ...")
    row = demo.set_alias("champion", tampered)
    holder = demo.client.get_registered_model(demo.name).aliases.get("champion")
    if str(holder) == honest:
        say(f"  champion: the guard moved it back to v{honest}: models:/{demo.name}@champion serves the "
            "honest version again")
        return row["status"] == "FAILED"
    say(f"  champion: still on v{holder}: this stack does not protect it (GUARD_PROTECTED_ALIASES). The demo "
        f"moves it back to v{honest} itself; `make run` protects champion unless told otherwise.")
    demo.client.set_registered_model_alias(demo.name, "champion", honest)
    return False


@dataclass(frozen=True)
class Act:
    """One act of the demo: a title and a function that plays it, True when it came out as expected."""

    title: str
    play: Callable[[Demo], bool]


ACTS = [
    Act("An honest version: PASSED", honest_version),
    Act("A file changed after the version was sealed: FAILED, naming it", tampered_file),
    Act("'champion' moved onto the tampered version, and back", champion_on_tampered),
    Act("Intact files, a verified seal, and a pickle: FAILED by the policy", pickled_model),
    Act("The alerts the guard sent for the FAILED verdicts", alerts_for_failed),
]


def running_stack(data_dir: Path) -> dict[str, Any]:
    """The addresses the running `make run` stack wrote (``stack.json`` under its data folder), or {}."""
    try:
        stack = json.loads((data_dir / STACK_FILE).read_text(encoding="utf-8"))
        pid = int(stack.get("pid") or 0)
        if pid > 0:
            os.kill(pid, 0)  # a stack that is gone (killed, machine restarted) left stale addresses
        return stack
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def addresses(env: dict[str, str] | os._Environ[str] = os.environ) -> tuple[str, str, str]:
    """Tracking server and listener to use, and where they came from (for the error message)."""
    stack = running_stack(Path(env.get("GUARD_DATA_DIR") or ".guard"))
    tracking = env.get("MLFLOW_TRACKING_URI") or stack.get("tracking_uri")
    listener = env.get("GUARD_LISTENER_URL") or stack.get("listener_url")
    origin = "MLFLOW_TRACKING_URI" if env.get("MLFLOW_TRACKING_URI") else (
        f"{Path(env.get('GUARD_DATA_DIR') or '.guard') / STACK_FILE}" if stack else "MLFLOW_PORT / PORT")
    tracking = tracking or f"http://127.0.0.1:{env.get('MLFLOW_PORT', '5000')}"
    listener = listener or f"http://127.0.0.1:{env.get('PORT', '8000')}"
    return str(tracking), str(listener).rstrip("/"), origin


def main() -> int:
    """Play every act; returns the exit status."""
    tracking, listener, origin = addresses()
    name = os.environ.get("GUARD_DEMO_MODEL", "guard-demo")
    if tracking.startswith("http") and not _reachable(tracking.rstrip("/") + "/health"):
        say(f"No MLflow server answers at {tracking} (from {origin}). Start `make run` first; if it runs "
            "with another GUARD_DATA_DIR, set the same GUARD_DATA_DIR here (or MLFLOW_TRACKING_URI and "
            "GUARD_LISTENER_URL).")
        return 1
    if not _reachable(listener + "/healthz"):
        say(f"No listener answers at {listener} (from {origin}). Start `make run` first, or set "
            "GUARD_LISTENER_URL.")
        return 1
    say(f"MLflow server: {tracking}   listener: {listener}   (from {origin})")
    try:
        import sklearn  # noqa: F401 - fail early with a clear message
    except ImportError:
        say("The demo trains a scikit-learn model: pip install -r requirements-dev.txt")
        return 1

    import mlflow
    from mlflow import MlflowClient
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    mlflow.set_tracking_uri(tracking)
    mlflow.set_experiment("guard-demo")
    features, labels = load_iris(return_X_y=True)
    receiver = running_stack(Path(os.environ.get("GUARD_DATA_DIR") or ".guard")).get("alert_receiver")
    demo = Demo(client=MlflowClient(tracking_uri=tracking), name=name, ui=tracking.rstrip("/"),
                listener=listener, alerts=receiver,
                model=LogisticRegression(max_iter=300).fit(features, labels), example=features[:3])
    results = []
    for number, act in enumerate(ACTS, start=1):
        say("")
        say(f"== {number}. {act.title} ==")
        try:
            results.append(act.play(demo))
        except TimeoutError as exc:
            say(str(exc))
            results.append(False)
    say("")
    say(f"The verdicts are on the versions in the MLflow UI ({demo.ui}/#/models/{quote(name)}) and on the "
        f"status page ({listener}/).")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
