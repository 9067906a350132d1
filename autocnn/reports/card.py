"""The model card: what a registered model is, how well it does and where it fails, how it was
chosen, and what it is for, as markdown (the registered version's description in MLflow, and
report/model_card.md)."""

import json

from autocnn import metrics as evaluate

WEAKEST = 3  # the classes named as the weakest, by F1


def model_card(record) -> str:
    """The card of ``record``'s model (records.SearchRecord, its artifacts downloaded)."""
    result = _json(record, "evaluation/metrics.json")
    fingerprint = _json(record, "data/fingerprint.json") or {}
    sections = [_title(record), _data(record, fingerprint),
                _results(result, record.params.get("best_flip", "none")), _model(record),
                _training(record), _choice(record), _use(fingerprint, result)]
    return "\n\n".join(s for s in sections if s) + "\n"


def _title(record) -> str:
    names = [f"`models:/{v['name']}/{v['version']}`"
             + (f" (alias {', '.join(v['aliases'])})" if v["aliases"] else "")
             for v in record.versions]
    what = ", ".join(names) or f"the model of search run `{record.run_id}`"
    return (f"# Model card: {record.params.get('dataset', '?')} classifier\n\n"
            f"{what}, from search run `{record.run_id}` of experiment "
            f"`{record.experiment}`.")


def _data(record, print_: dict) -> str:
    if not print_:
        return f"## Data\n\n- source: `{record.params.get('dataset', '?')}`"
    splits = ", ".join(f"{name} {count:,}" for name, count in print_["splits"].items())
    classes = print_["classes"]
    return "\n".join([
        "## Data", "",
        f"- source: `{print_['source']}`",
        f"- fingerprint: `{print_['digest']}` (SHA-256 of every split's images and labels; a "
        "model is only compared with models of the same fingerprint)",
        f"- {len(classes)} classes: {', '.join(map(str, classes))}",
        f"- input: {'x'.join(map(str, print_['input_shape']))} images, pixel values scaled "
        "to [0, 1]",
        f"- split (stratified, seed {record.params.get('seed', '?')}): {splits} images"])


def _results(result: dict | None, flips: str = "none") -> str:
    if not result:
        return "## Test results\n\nNot evaluated (the search ran with --no-evaluate)."
    weakest = sorted(result["per_class"].items(), key=lambda item: item[1]["f1"])[:WEAKEST]
    confusions = evaluate.confused_pairs(result)
    lines = [
        "## Test results", "",
        f"On the held-out test split ({sum(s['support'] for s in result['per_class'].values()):,}"
        " images, never seen in the search or the final training):", "",
        f"- accuracy {result['accuracy']:.4f}, balanced accuracy "
        f"{result.get('balanced_accuracy', float('nan')):.4f}",
        f"- macro precision {result['precision_macro']:.4f}, recall "
        f"{result['recall_macro']:.4f}, F1 {result['f1_macro']:.4f}", "",
        _markdown_table(("class", "precision", "recall", "F1", "images"),
                        [(name, f"{s['precision']:.4f}", f"{s['recall']:.4f}", f"{s['f1']:.4f}",
                          f"{s['support']:,}") for name, s in result["per_class"].items()]), "",
        "Weakest classes (F1): " + ", ".join(f"{name} {s['f1']:.4f}" for name, s in weakest)
        + "."]
    if flips != "none":
        lines += ["", f"Each test image was scored with its flips ({flips.replace('_', ' ')}, "
                  "as in training) averaged in, as `autocnn evaluate` and `predict` do; an "
                  "export, or the MLflow model served as it is, scores the image alone "
                  "(`--no-tta` gives those figures)."]
    if confusions:
        lines += ["", "Most frequent mistakes:", ""]
        lines += [f"- {true} taken for {guess}: {count:,} of {total:,} ({count / total:.1%})"
                  for true, guess, count, total in confusions]
    return "\n".join(lines)


def _model(record) -> str:
    best = {k.removeprefix("best_"): v for k, v in record.params.items() if k.startswith("best_")}
    params = record.metrics.get("model_params")
    shown = ", ".join(f"{k}={v}" for k, v in best.items() if not k.startswith("tuner/"))
    return "\n".join([
        "## Model", "",
        f"- family: {best.get('family', '?')}"
        + (f", backbone {best['backbone']}" if "backbone" in best else ""),
        f"- parameters: {int(params):,}" if params is not None else "- parameters: ?",
        f"- hyperparameters: {shown or '?'}",
        "- layers: `model/summary.txt` among the run's artifacts"])


def _training(record) -> str:
    p, m = record.params, record.metrics
    budget = p.get("time_budget")
    seconds = m.get("elapsed_seconds", m.get("search_seconds"))
    return "\n".join([
        "## Training", "",
        f"- tuner: {p.get('tuner', '?')}, up to {p.get('epochs', '?')} epochs a trial"
        + (f", a time budget of {float(budget):.0f} s" if budget not in (None, "None") else ""),
        f"- trials: {int(m.get('trials_completed', 0))} completed, "
        f"{int(m.get('trials_failed', 0))} failed",
        f"- time: {seconds:.0f} s in all" if seconds is not None else "- time: ?",
        *_final_schedule(p),
        f"- machine: {record.tags.get('autocnn.machine', 'not recorded')}"])


def _final_schedule(p) -> list:
    """A line where the final training's learning rate fell otherwise than in the trials."""
    final, own = p.get("final_lr_schedule"), p.get("best_lr_schedule")
    if not final or final == own:
        return []
    return [f"- final training: the learning rate fell on a {final} schedule over the epochs "
            f"the budget gave it (its trials: {own})"]


def _choice(record) -> str:
    p, m = record.params, record.metrics
    finalists = {k: v for k, v in m.items() if k.startswith("finalist_trial_")}
    how = [f"The trial with the best validation accuracy "
           f"({m.get('best_val_accuracy', float('nan')):.4f}) of the search's trials"]
    if len(finalists) > 1:
        how.append(f"then the best of {len(finalists)} finalists, each trained on all the "
                   "training images")
    elif p.get("final_trained_on"):
        how.append(f"then trained again on {p['final_trained_on']}")
    elif p.get("retrain") == "True":  # a run from before final_trained_on was logged
        how.append("retrained on train + val")
    champion = p.get("champion_metric", "f1_macro")
    return ("## How it was chosen\n\n" + ", ".join(how) + f". The `champion` alias moves to "
            f"a new version only when it scores higher on test {champion} than the champion "
            "and was trained on data of the same fingerprint.")


def _use(print_: dict, result: dict | None) -> str:
    classes = print_.get("classes", [])
    shape = "x".join(map(str, print_.get("input_shape", []))) or "?"
    weakest = (sorted(result["per_class"], key=lambda n: result["per_class"][n]["f1"])[0]
               if result else None)
    return "\n".join([
        "## Intended use and limits", "",
        f"- Intended: sorting images like those of `{print_.get('source', '?')}` into its "
        f"{len(classes) or '?'} classes; images are resized to {shape} and scaled as in "
        "training (`autocnn predict` does both).",
        "- It always answers one of its classes, even for an image of none of them.",
        "- The test figures hold for images drawn like the test split; other cameras, "
        "lighting, framing or resolution may score lower. Check on your own images first.",
        *([f"- Its weakest class is {weakest}: treat its answers there with more care."]
          if weakest else []),
        "- Not assessed for fairness across groups of people, nor against adversarial "
        "images."])


def _markdown_table(header, rows) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "\n".join("| " + " | ".join(str(c).replace("|", "\\|") for c in line) + " |"
                     for line in lines)


def _json(record, path: str):
    found = record.artifact(path)
    return json.loads(found.read_text()) if found else None
