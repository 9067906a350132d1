"""Declarative pipelines: a YAML file names stages, each a command of the CLI, run in order.

```yaml
name: digits                # the state file's name: mlruns/pipelines/digits.json
data: {path: digits}        # the data set (and data options) for every stage that loads data
settings: {seed: 42}        # options for every stage that has them
stages:
  - search: {tuner: bayesian, max_trials: 10}
  - evaluate: {split: test}                    # evaluates the model the search registered
  - export: {format: tflite, output: mlruns/exports/digits.tflite}
```

Each stage's options are the command's own (`autocnn search --help`), with underscores; click
checks them all before the first stage runs. A stage without ``model`` takes the model the
search registered. Finished stages are recorded; rerunning the file skips those whose settings
are unchanged, so a pipeline that failed half-way resumes where it stopped.
"""

import hashlib
import json
from pathlib import Path

import click

from autocnn.config import read_yaml
from autocnn.errors import ConfigError, did_you_mean

STAGES = ("search", "evaluate", "predict", "export")
SECTIONS = ("name", "description", "data", "settings", "stages")
PENDING_MODEL = "models:/pending-search"  # stands for the search's model while checking
STATE_DIR = Path("mlruns/pipelines")


def load(path, sets=()) -> dict:
    """The pipeline file with ``--set section.key=value`` applied; ConfigError when malformed."""
    file = Path(path)
    spec = read_yaml(file, "pipeline file", "name, description, data, settings and stages")
    unknown = set(spec) - set(SECTIONS)
    if unknown:
        first = sorted(unknown)[0]
        raise ConfigError(f"{path}: unknown section {first!r}{did_you_mean(first, SECTIONS)}; a "
                          "pipeline has name, description, data, settings and stages")
    stages = spec.get("stages")
    if not isinstance(stages, list) or not stages:
        raise ConfigError(f"{path}: 'stages' must be a list of stages, e.g. - search: {{...}}")
    parsed = []
    for number, stage in enumerate(stages, 1):
        if not isinstance(stage, dict) or len(stage) != 1:
            raise ConfigError(f"{path}: stage {number} must be one mapping, e.g. - search: {{...}}")
        (name, options), = stage.items()
        if name not in STAGES:
            raise ConfigError(f"{path}: stage {number} is {name!r}{did_you_mean(name, STAGES)}; "
                              f"stages are {', '.join(STAGES)}")
        if options is not None and not isinstance(options, dict):
            raise ConfigError(f"{path}: stage {number} ({name}) takes a mapping of options")
        parsed.append([name, dict(options or {})])
    result = {"name": str(spec.get("name") or file.stem), "data": dict(spec.get("data") or {}),
              "settings": dict(spec.get("settings") or {}), "stages": parsed,
              "text": file.read_text(), "path": str(file)}
    for key, value in sets.items():
        _apply(result, key, value, path)
    if result["data"].get("path") == "REQUIRED":
        raise ConfigError(f"{path}: give the data with --set data.path=FOLDER")
    return result


def _apply(spec, key, value, path):
    section, _, name = key.partition(".")
    if not name:
        raise ConfigError(f"--set {key}: give SECTION.KEY=VALUE (data.path=..., "
                          "settings.seed=..., or a stage's name: search.max_trials=...)")
    if section in ("data", "settings"):
        spec[section][name] = value
        return
    matches = [options for stage, options in spec["stages"] if stage == section]
    if not matches:
        raise ConfigError(f"--set {key}: {path} has no stage {section!r}")
    for options in matches:
        options[name] = value


def arguments(command: click.Command, name: str, options: dict, where: str) -> list[str]:
    """``options`` as the command line of ``command``: ConfigError naming an unknown key."""
    params = keys(command)
    positional, flags = [], []
    for key, value in options.items():
        param = params.get(key)
        if param is None:
            hint = did_you_mean(key, params) or f"; `autocnn {name} --help` lists its options"
            raise ConfigError(f"{where}: stage {name} has no option {key!r}{hint}")
        values = value if isinstance(value, list) else [value]
        if isinstance(param, click.Argument):
            positional += [str(v) for v in values]
            continue
        option = max(param.opts, key=len)
        if param.is_flag:
            if value:
                flags.append(option)
            continue
        if key == "image_size" and isinstance(value, list):  # [64, 48] as the option's 64x48
            values = ["x".join(map(str, value))]
        for v in values:
            flags += [option, str(v).lower() if isinstance(v, bool) else str(v)]
    return positional + flags


def keys(command: click.Command) -> dict:
    """The keys a stage takes: its options' long names with underscores (``max_trials``,
    ``format``) and its arguments (``model``, ``images``)."""
    found = {}
    for param in command.params:
        if isinstance(param, click.Argument):
            found[param.name] = param
        elif param.name != "help":
            long = [o for o in param.opts if o.startswith("--")]
            found[long[0][2:].replace("-", "_") if long else param.name] = param
    return found


def plan(spec: dict, commands: dict) -> list[tuple[str, dict, list[str]]]:
    """Each stage's name, options and command line, all checked by click before any runs."""
    planned = []
    for number, (name, options) in enumerate(spec["stages"], 1):
        command = commands[name]
        accepted = set(keys(command))
        merged = {k: v for k, v in spec["settings"].items() if k in accepted}
        if "dataset" in accepted:
            data = dict(spec["data"])
            if "path" in data:
                data["dataset"] = data.pop("path")
            merged.update({k: v for k, v in data.items() if k in accepted})
        merged.update(options)
        if name != "search" and "model" not in merged:
            merged = {"model": PENDING_MODEL, **merged}
        where = f"{spec['path']}, stage {number}"
        args = arguments(command, name, merged, where)
        try:
            command.make_context(name, list(args), resilient_parsing=False)
        except click.ClickException as err:
            raise ConfigError(f"{where} ({name}): {err.format_message()}") from None
        planned.append((name, merged, args))
    return planned


def run(spec: dict, commands: dict, rerun: bool = False) -> list[dict]:
    """Run the stages in order, skipping those already finished with the same settings."""
    from autocnn.errors import AutoCNNError
    from autocnn.tracking.store import redact_text

    planned = plan(spec, commands)
    state_file = STATE_DIR / f"{spec['name']}.json"
    state = {} if rerun or not state_file.is_file() else json.loads(state_file.read_text())
    outputs, results = {}, []
    for number, (name, options, args) in enumerate(planned, 1):
        if options.get("model") == PENDING_MODEL:
            if not outputs.get("model"):
                raise ConfigError(f"stage {number} ({name}) needs a model: put a search with "
                                  "registration before it, or give model: models:/NAME@champion")
            args = [outputs["model"] if a == PENDING_MODEL else a for a in args]
        key = f"{number}:{name}"
        digest = hashlib.sha256(json.dumps([args], sort_keys=True).encode()).hexdigest()
        done = state.get(key)
        if done and done["digest"] == digest:
            click.echo(f"== stage {number}/{len(planned)}: {name} finished before; skipped "
                       f"({_describe(done['outputs'])})")
            outputs.update(done["outputs"])
            results.append(done["outputs"])
            continue
        click.echo(f"== stage {number}/{len(planned)}: {name} {redact_text(' '.join(args))}")
        try:
            result = commands[name].main(args=list(args), prog_name=f"autocnn {name}",
                                         standalone_mode=False) or {}
        except (AutoCNNError, click.ClickException) as err:
            message = err.format_message() if isinstance(err, click.ClickException) else err
            raise ConfigError(f"stage {number} ({name}) failed: {message}; the stages before "
                              "it are kept, and rerunning the pipeline resumes here") from None
        if name == "search" and result.get("run_id"):
            _log_pipeline(spec, result)
        outputs.update({k: v for k, v in result.items() if v is not None})
        results.append(result)
        state[key] = {"digest": digest, "outputs": {
            k: redact_text(v) if isinstance(v, str) else v for k, v in result.items()}}
        # Later stages depend on this one: what came after it must run again.
        state = {k: v for k, v in state.items() if int(k.split(":")[0]) <= number}
        state_file.parent.mkdir(parents=True, exist_ok=True)
        state_file.write_text(json.dumps(state, indent=1) + "\n")
    return results


def _describe(outputs: dict) -> str:
    shown = ("model", "path", "run_id", "evaluation_run_id", "accuracy")
    return ", ".join(f"{k} {v}" for k, v in outputs.items() if k in shown)


def _log_pipeline(spec, result):
    from autocnn.tracking import log_text
    from autocnn.tracking.store import redact_text

    log_text(result["tracking_uri"], result["run_id"], redact_text(spec["text"]),
             f"pipeline/{Path(spec['path']).name}")
