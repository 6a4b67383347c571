"""`make demo`: watch the guard pass an honest model version and catch a tampered one.

Run it while `make run` is up: it reads the addresses that stack was started with from
``$GUARD_DATA_DIR/stack.json`` (``MLFLOW_PORT``/``PORT`` need not be repeated). ``MLFLOW_TRACKING_URI`` and
``GUARD_LISTENER_URL`` override them (any MLflow server whose webhook calls the listener). It needs
scikit-learn (in requirements-dev.txt) and a tracking server whose artifact store is a local folder (the
local stack's is), because step 2 edits a stored model file the way an attacker or an accident would.

1. Trains a small scikit-learn model, logs and registers it, sets the alias ``champion`` and waits for the
   verdict of that alias event the listener writes onto the version (tag ``validation.status``; the
   ``model_version.created`` verdict that may land meanwhile is not the one shown): PASSED.
2. Registers a second version that carries a nested file (``code/demo_assets/preprocessing/vocabulary.txt``),
   waits for it to be sealed, changes that file in the artifact store, sets the alias ``challenger`` and
   waits again: FAILED, naming the file.

Exit status 0 when both verdicts came out as expected, 1 otherwise.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlparse

NESTED_FILE = "code/demo_assets/preprocessing/vocabulary.txt"
STACK_FILE = "stack.json"  # written by deploy/local_stack.py while `make run` is up
ALIAS_EVENT = "model_version_alias.created"
VERDICT_TIMEOUT_S = float(os.environ.get("GUARD_DEMO_TIMEOUT", "180"))


def say(message: str = "") -> None:
    """Print one line at once (the demo is watched live)."""
    print(message, flush=True)


def _reachable(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, ConnectionError, OSError):
        return False


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def verdict_trigger(tags: dict[str, str]) -> str | None:
    """The event a verdict answers (``trigger`` in its ``validation.report`` tag), or None."""
    try:
        report = json.loads(tags.get("validation.report") or "")
    except ValueError:
        return None
    return report.get("trigger") if isinstance(report, dict) else None


def wait_for_verdict(client: Any, name: str, version: str, since: datetime,
                     want: str | None = None, trigger: str | None = None) -> dict[str, str]:
    """Poll the version's tags until a verdict checked at or after ``since`` (and equal to ``want``, and
    answering the event ``trigger``) is there.

    ``validation.checked_at`` has one-second resolution, so ``since`` is compared to the second; that is
    why the event is matched too: a verdict of an earlier event can land in the same second.
    """
    since = since.replace(microsecond=0)
    deadline = time.monotonic() + VERDICT_TIMEOUT_S
    tags: dict[str, str] = {}
    while time.monotonic() < deadline:
        tags = dict(client.get_model_version(name, version).tags)
        checked = _parse_time(tags.get("validation.checked_at"))
        status = tags.get("validation.status")
        if (status and checked and checked >= since and (want is None or status == want)
                and (trigger is None or verdict_trigger(tags) == trigger)):
            return tags
        time.sleep(0.5)
    shown = {k: v for k, v in tags.items() if k != "validation.report"}
    raise TimeoutError(f"no {'verdict' if want is None else want} on {name} v{version} within "
                       f"{VERDICT_TIMEOUT_S:.0f}s (tags now: {shown}); is `make run` up and the webhook "
                       "registered?")


def paths_in_report(report_json: str | None) -> list[str]:
    """Every ``path`` named in the ``validation.report`` tag (differences of both comparisons)."""
    if not report_json:
        return []
    try:
        report = json.loads(report_json)
    except ValueError:
        return []
    found: dict[str, None] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("path"), str) and node.get("kind"):
                found.setdefault(node["path"], None)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(report)
    return list(found)


def show(tags: dict[str, str], name: str, version: str, ui: str) -> None:
    """Print a verdict the way the registry shows it."""
    say(f"  verdict:  {tags.get('validation.status')}")
    say(f"  summary:  {tags.get('validation.summary', '')}")
    say(f"  event:    {verdict_trigger(tags) or '?'}")
    if tags.get("validation.seal"):
        say(f"  seal:     sha256 {tags['validation.seal'][:16]}…")
    say(f"  see it:   {ui}/#/models/{quote(name)}/versions/{version}")


def local_path(uri: str) -> Path | None:
    """The folder behind a local artifact URI (``/path`` or ``file://``), else None."""
    if uri.startswith("file://"):
        return Path(unquote(urlparse(uri).path))
    if uri.startswith("/"):
        return Path(uri)
    return None


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


def protected_alias_act(client: Any, name: str, good: str, bad: str) -> bool:
    """Act 3: set the protected alias on the tampered version; with GUARD_PROTECTED_ALIASES it moves back."""
    say("")
    say(f"== 3. The alias 'champion' set on the tampered version v{bad} ==")
    time.sleep(1.0)  # checked_at has one-second resolution: this verdict must be told from act 2's
    since = datetime.now(timezone.utc)
    client.set_registered_model_alias(name, "champion", bad)
    try:
        tags = wait_for_verdict(client, name, bad, since, want="FAILED", trigger=ALIAS_EVENT)
    except TimeoutError as exc:
        say(str(exc))
        return False
    holder = client.get_registered_model(name).aliases.get("champion")
    reverted = tags.get("validation.alias_reverted")
    if reverted:
        say(f"  guard:    {reverted}")
        say(f"  champion: v{holder} (models:/{name}@champion serves the honest version again)")
        return holder == good
    say(f"  champion: v{holder}, FAILED; the alias is not protected on this stack. Start it with "
        "`GUARD_PROTECTED_ALIASES=champion make run` and the guard moves it back to the honest version.")
    return True


def main() -> int:
    """Run both acts of the demo; returns the exit status."""
    tracking, listener, origin = addresses()
    name = os.environ.get("GUARD_DEMO_MODEL", "guard-demo")
    if tracking.startswith("http") and not _reachable(tracking.rstrip("/") + "/health"):
        say(f"No MLflow server answers at {tracking} (from {origin}). Start `make run` first; if it runs "
            "with another GUARD_DATA_DIR, set the same GUARD_DATA_DIR here (or MLFLOW_TRACKING_URI and "
            "GUARD_LISTENER_URL).")
        return 1
    say(f"MLflow server: {tracking}   listener: {listener}   (from {origin})")
    try:
        import sklearn  # noqa: F401 - fail early with a clear message
    except ImportError:
        say("The demo trains a scikit-learn model: pip install -r requirements-dev.txt")
        return 1

    import mlflow
    import mlflow.sklearn
    from mlflow import MlflowClient
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    mlflow.set_tracking_uri(tracking)
    client = MlflowClient(tracking_uri=tracking)
    ui = tracking.rstrip("/")
    mlflow.set_experiment("guard-demo")
    features, labels = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=300).fit(features, labels)
    ok = True

    say(f"== 1. An honest model version ({name}) ==")
    with mlflow.start_run(run_name="honest"):
        info = mlflow.sklearn.log_model(model, name="model", registered_model_name=name)
    v1 = str(info.registered_model_version)
    say(f"registered {name} v{v1}; setting alias 'champion' ...")
    since = datetime.now(timezone.utc)
    client.set_registered_model_alias(name, "champion", v1)
    tags = wait_for_verdict(client, name, v1, since, trigger=ALIAS_EVENT)
    show(tags, name, v1, ui)
    ok &= tags.get("validation.status") == "PASSED"

    say("")
    say("== 2. A version whose stored files change after it was registered ==")
    with tempfile.TemporaryDirectory() as tmp:
        assets = Path(tmp) / "demo_assets"
        (assets / "preprocessing").mkdir(parents=True)
        (assets / "__init__.py").write_text("")
        (assets / "preprocessing" / "vocabulary.txt").write_text("setosa\nversicolor\nvirginica\n")
        with mlflow.start_run(run_name="to-be-tampered"):
            info = mlflow.sklearn.log_model(model, name="model", registered_model_name=name,
                                            code_paths=[str(assets)])
    v2 = str(info.registered_model_version)
    say(f"registered {name} v{v2}; waiting for the listener to seal it ...")
    since = datetime.fromtimestamp(client.get_model_version(name, v2).creation_timestamp / 1000, timezone.utc)
    tags = wait_for_verdict(client, name, v2, since)
    show(tags, name, v2, ui)

    stored = local_path(client.get_model_version_download_uri(name, v2))
    target = stored / NESTED_FILE if stored else None
    if target is None or not target.is_file():
        say(f"The model files of v{v2} are not in a local folder here ({stored}); the tampering step "
            "needs the local stack's artifact store. Skipping it.")
        return 0 if ok else 1
    with target.open("a") as fh:
        fh.write("poisoned-label\n")
    say(f"changed {NESTED_FILE} in the artifact store ({target})")
    say("setting alias 'challenger' ...")
    since = datetime.now(timezone.utc)
    client.set_registered_model_alias(name, "challenger", v2)
    try:
        tags = wait_for_verdict(client, name, v2, since, want="FAILED", trigger=ALIAS_EVENT)
    except TimeoutError as exc:
        say(str(exc))
        return 1
    show(tags, name, v2, ui)
    named = paths_in_report(tags.get("validation.report"))
    caught = any(path.endswith(NESTED_FILE) or NESTED_FILE.endswith(path) for path in named) \
        or NESTED_FILE in tags.get("validation.summary", "")
    say(f"  files:    {', '.join(named) or '(see the report)'}")
    ok &= caught
    ok &= protected_alias_act(client, name, v1, v2)
    say("")
    say(f"Both verdicts are on the versions in the MLflow UI ({ui}/#/models/{quote(name)}) and on the "
        f"status page ({listener}/).")
    if not caught:
        say(f"unexpected: the FAILED verdict does not name {NESTED_FILE}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
