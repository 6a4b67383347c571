"""Command-line tools: ``check-model-version`` and ``compare-model-versions``.

Exit status: 0 identical, 1 differences found, 2 could not check (reason on stderr; traceback
only with ``--verbose``). A report file, when asked for, is written in all three cases.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from core.cli.exit_codes import FastExitCommand
from core.cli.output import (
    fail_early,
    finish,
    print_differences,
    print_headline,
    print_policy,
    quiet_unless_verbose,
    transfer_progress,
)

# Progress bars of artifact downloads would drown the result in a terminal or a CI log.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

_EPILOG_EXIT = ("Exit status: 0 identical, 1 differences found, 2 could not check "
                "(unknown model/version/alias, empty stage, tracking server unreachable, …).")


_CONCURRENCY_HELP = ("Concurrent transfers when streaming remote models [default: per store kind: 8 for the "
                     "tracking server's artifact proxy, 16 for S3, 4 otherwise].")
_EXCLUDE_HELP = ("Leave out paths matching this glob, relative to the model root ('*' within a folder, "
                 "'**' across folders, a folder = everything in it; e.g. '**/model.skops'). Repeatable. "
                 "Excluded paths are listed in the report ('excluded').")


@click.command(
    cls=FastExitCommand,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=_EPILOG_EXIT + " With --seal-store and --public-key, the registry model is verified against the "
    "version's signed seal (signature by a given key, the seal names this version, every file matches); a "
    "version with no signed seal exits 1 (\"no signed seal\"). Without them, the unsigned seal in a "
    "validation.manifest tag (versions sealed before signed seals) is verified, unless --no-seal-tag.",
)
@click.option("--model", required=True, help="Registered model name.")
@click.option("--version-or-stage", required=True, metavar="V",
              help="Version number (e.g. 3), @alias (e.g. @champion), stage name (None, Staging, Production, "
                   "Archived; any case; the latest version in that stage), or any other word: an alias.")
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI", show_envvar=True, metavar="URI",
              help="Tracking server (http://host:port, databricks://profile, …).")
@click.option("--registry-uri", envvar="MLFLOW_REGISTRY_URI", show_envvar=True, metavar="URI",
              help="Model registry, if not the tracking server.")
@click.option("--download-dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Where remote models are downloaded, each check into a fresh sub-folder "
                   "[default: the system temp folder]. Local models are compared in place, never copied.")
@click.option("--report-file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write the full report here: JSON, or YAML for .yaml/.yml. Written for every exit status.")
@click.option("--keep-downloads", is_flag=True,
              help="Keep the downloaded copies (default: removed after the check).")
@click.option("--seal-file", type=click.Path(dir_okay=False, exists=True), metavar="FILE",
              help="Also verify the registry model against this manifest (JSON, as stored in the "
                   "validation.manifest tag); replaces the tag's seal.")
@click.option("--no-seal-tag", is_flag=True, help="Do not verify against the validation.manifest tag.")
@click.option("--seal-store", metavar="URI", help="Where the signed seals are (the guard's GUARD_SEAL_STORE: "
              "a folder, file:// or s3://… URI). Needs --public-key.")
@click.option("--public-key", "public_keys", multiple=True, type=click.Path(dir_okay=False), metavar="FILE",
              help="A PEM public key a seal may be signed with (the guard serves its own at "
                   "GET /seal-key.pem). Repeatable, for key rotation.")
@click.option("--workspace-host", envvar="DATABRICKS_HOST", show_envvar=True, metavar="URL",
              help="Databricks only: the workspace, part of the seal's identity.")
@click.option("--exclude", "exclude", multiple=True, metavar="GLOB", help=_EXCLUDE_HELP)
@click.option("--transfer-concurrency", type=click.IntRange(min=1), metavar="N", help=_CONCURRENCY_HELP)
@click.option("--policy", "policy_file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Also check the model against this policy (YAML; see docs/policies.md): a policy FAIL "
                   "exits 1; a broken policy file exits 2. @alias applies the policy's section for that "
                   "alias, a stage its stage section; a version number gets default and models only.")
@click.option("--verbose", "-v", is_flag=True, help="Show tracebacks and MLflow's log messages.")
def check_model_version_cli(model: str, version_or_stage: str, tracking_uri: str | None,
                            registry_uri: str | None, download_dir: str | None, report_file: str | None,
                            keep_downloads: bool, seal_file: str | None, no_seal_tag: bool,
                            seal_store: str | None, public_keys: tuple[str, ...], workspace_host: str | None,
                            exclude: tuple[str, ...], transfer_concurrency: int | None,
                            policy_file: str | None, verbose: bool) -> None:
    """Check that a model version's run model and registry model are identical.

    The run model (the version's source) and the registry model (its download URI) are compared
    exactly: every file in every sub-folder, by content (SHA-256), with missing, extra,
    changed and type-changed entries listed by path. The registered_model_meta file MLflow adds
    to downloads is left out and named in the report.

    \b
    Examples:
      check-model-version --model wine --version-or-stage 3
      check-model-version --model wine --version-or-stage @champion --report-file check.json
      check-model-version --model wine --version-or-stage production \\
          --tracking-uri http://127.0.0.1:5000 --report-file check.yaml
    """
    quiet_unless_verbose(verbose)
    from core.check import check_model_version
    from core.errors import CheckError
    from core.seal.manifest import Manifest
    from core.seal.step import verify_only_options

    try:
        signed_seal = verify_only_options(seal_store, public_keys, workspace_host=workspace_host)
    except CheckError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    policy, alias, stage = None, None, None
    if policy_file:
        from core.policy.loader import PolicyError, load_policy
        from core.registry.stages import canonical_stage

        try:
            policy = load_policy(policy_file)
        except PolicyError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        spec = version_or_stage.strip()
        if spec.startswith("@"):
            alias = spec[1:]
        elif not spec.isdigit():
            stage = canonical_stage(spec)
            alias = None if stage is not None else spec
    seal = None
    if seal_file:
        try:
            seal = Manifest.from_json(Path(seal_file).read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            click.echo(f"error: {seal_file} is not a valid manifest: {exc}", err=True)
            sys.exit(2)
    with transfer_progress() as progress:
        result = check_model_version(model, version_or_stage, tracking_uri=tracking_uri,
                                     registry_uri=registry_uri, download_dir=download_dir,
                                     keep_downloads=keep_downloads, seal=seal, seal_from_tag=not no_seal_tag,
                                     report_file=report_file, exclude=exclude,
                                     transfer_concurrency=transfer_concurrency, progress=progress,
                                     signed_seal=signed_seal, policy=policy, alias=alias, stage=stage)
    print_headline(result, verbose)
    if result.status != "ERROR":
        print_differences("Differences between run model and registry model", result.differences)
        print_differences("Differences from the seal", result.seal_differences)
        if result.seal_outcome is not None:
            click.echo(f"seal ({result.seal_outcome.kind}): {result.report['Seal']['reason']}")
        elif result.seal_checked:
            src = result.report.get("Seal", {}).get("source")
            state = "matches" if not result.seal_differences else "DOES NOT match"
            click.echo(f"seal ({src}): {state}")
        print_policy(result.policy)
    finish(result, report_file, verbose)


@click.command(
    cls=FastExitCommand,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=_EPILOG_EXIT,
)
@click.option("--config-file", required=True, type=click.Path(dir_okay=False, exists=True), metavar="FILE",
              help="YAML or JSON naming the two versions (see above).")
@click.option("--download-dir", type=click.Path(file_okay=False), metavar="DIR",
              help="Where remote models are downloaded, each into a fresh sub-folder "
                   "[default: the system temp folder]. Local models are compared in place.")
@click.option("--report-file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write the full report here: JSON, or YAML for .yaml/.yml. Written for every exit status.")
@click.option("--compare-run-models", is_flag=True,
              help="Compare the two run models (as the original tool; with neither --compare-* flag, both "
                   "comparisons are made).")
@click.option("--compare-reg-models", is_flag=True,
              help="Compare the two registry models (as the original tool; see --compare-run-models).")
@click.option("--skip-compare-run-models", is_flag=True, help="Do not compare the two run models.")
@click.option("--skip-compare-reg-models", is_flag=True, help="Do not compare the two registry models.")
@click.option("--exclude", "exclude", multiple=True, metavar="GLOB",
              help=_EXCLUDE_HELP + " Applies to both sides, as does each side's 'exclude' in the config.")
@click.option("--keep-downloads", is_flag=True, help="Keep the downloaded copies (default: removed).")
@click.option("--transfer-concurrency", type=click.IntRange(min=1), metavar="N", help=_CONCURRENCY_HELP)
@click.option("--verbose", "-v", is_flag=True, help="Show tracebacks and MLflow's log messages.")
def compare_model_versions_cli(config_file: str, download_dir: str | None, report_file: str | None,
                               compare_run_models: bool, compare_reg_models: bool,
                               skip_compare_run_models: bool, skip_compare_reg_models: bool,
                               exclude: tuple[str, ...], keep_downloads: bool,
                               transfer_concurrency: int | None, verbose: bool) -> None:
    """Compare two model versions, possibly on two tracking servers or workspaces.

    The run models of the two versions are compared with each other, and so are their registry
    models: every file in every sub-folder, by content. Differences are listed by path as
    changed, only_in_1, only_in_2 or type_mismatch. --compare-run-models and --compare-reg-models
    select comparisons as in the original tool; with neither, both are made; --skip-* remove one.

    \b
    Config file (YAML or JSON):
      tracking_server_1:            # or tracking_server_01
        host: http://127.0.0.1:5000 # tracking URI (default: $MLFLOW_TRACKING_URI)
        registry_uri: ...           # optional
        model: wine
        version_or_stage: production   # number, @alias, stage or alias
        native_model: model.pkl     # optional: compare only this path inside the model
        exclude: ["**/*.log"]       # optional: globs left out (of both sides)
      tracking_server_2:            # or tracking_server_02
        host: databricks://prod
        model: wine
        version_or_stage: "3"

    \b
    Example:
      compare-model-versions --config-file config.yaml --download-dir /tmp/scratch \\
          --report-file compare.json --compare-run-models --compare-reg-models
    """
    quiet_unless_verbose(verbose)
    from core.compare.versions import compare_model_versions

    try:
        text = Path(config_file).read_text(encoding="utf-8")
        if config_file.lower().endswith(".json"):
            config = json.loads(text)
        else:
            import yaml

            config = yaml.safe_load(text)  # YAML is a superset of JSON: any other name reads both
    except (OSError, ValueError) as exc:
        fail_early(f"cannot read config file {config_file}: {exc}", report_file, verbose)
    except Exception as exc:  # yaml.YAMLError and friends
        fail_early(f"cannot parse config file {config_file}: {exc}", report_file, verbose)
    # The original tool's flags select comparisons; with neither, both are made (as before).
    selected = compare_run_models or compare_reg_models
    skip_run = skip_compare_run_models or (selected and not compare_run_models)
    skip_reg = skip_compare_reg_models or (selected and not compare_reg_models)
    with transfer_progress() as progress:
        result = compare_model_versions(config, download_dir=download_dir, skip_run=skip_run,
                                        skip_reg=skip_reg, keep_downloads=keep_downloads, exclude=exclude,
                                        default_host=os.environ.get("MLFLOW_TRACKING_URI") or None,
                                        transfer_concurrency=transfer_concurrency, progress=progress)
    result.report["Options"].update({"compare_run_models": compare_run_models,
                                     "compare_reg_models": compare_reg_models})
    print_headline(result, verbose)
    if result.status != "ERROR":
        print_differences("Differences between the run models", result.run_differences)
        print_differences("Differences between the registry models", result.reg_differences)
    finish(result, report_file, verbose)
