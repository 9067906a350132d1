"""Plain-text summaries for the console."""

from autocnn import metrics as evaluate
from autocnn.control import format_duration
from autocnn.tables import format_table


def metric_rows(m: dict, prefix: str = "") -> list[tuple[str, str]]:
    """Accuracy (and balanced accuracy, where known), then precision, recall and F1 (macro and
    weighted), as (label, value) rows."""
    balanced = (f", balanced {m['balanced_accuracy']:.4f}" if "balanced_accuracy" in m else "")
    return [
        (f"{prefix}accuracy", f"{m['accuracy']:.4f}{balanced}"),
        (f"{prefix}precision", f"macro {m['precision_macro']:.4f}, weighted "
                               f"{m['precision_weighted']:.4f}"),
        (f"{prefix}recall", f"macro {m['recall_macro']:.4f}, weighted {m['recall_weighted']:.4f}"),
        (f"{prefix}F1", f"macro {m['f1_macro']:.4f}, weighted {m['f1_weighted']:.4f}"),
    ]


def format_rows(rows) -> list[str]:
    """(label, value) rows as aligned lines (no header)."""
    return format_table(("", ""), rows).splitlines()[1:]


def format_summary(result, config) -> str:
    """The end-of-search summary: best trial, test metrics, per-class scores, registered model."""
    m = result.metrics
    hps = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in result.best_hyperparameters.items())
    budget = ("" if config.time_budget is None
              else f" of a {format_duration(config.time_budget)} budget")
    stopped = " (the time budget ended the search)" if result.stopped_by == "time budget" else ""
    rows = [
        ("trials", f"{result.trials_completed} completed, {result.trials_failed} failed{stopped}"),
        ("best trial", f"{int(result.best_trial_id) + 1} (val_accuracy "
                       f"{result.best_val_accuracy:.4f})"),
        *([("last rung", ", ".join(f"trial {int(t) + 1} {v:.4f}"
                                    for t, v in result.finalists.items())
                          + " (val_accuracy trained on all of train; the best is the result)")]
          if len(result.finalists) > 1 else []),
        ("hyperparameters", hps),
        ("retrained", f"{result.retrain_epochs} epochs on {result.retrained_on}"
         if result.retrain_epochs
         else f"no: the best trial's model, trained on train ({result.kept_because})"),
        *(metric_rows(m, "test ") if m else [("test split", "not evaluated (--no-evaluate)")]),
        ("time", f"{format_duration(result.seconds)}{budget}"),
        *([("trial overhead", f"{result.overhead_seconds:.1f}s a trial on average (building, "
                              "compiling, tracing the first step, logging)")]
          if result.overhead_seconds is not None else []),
        ("MLflow run", result.run_id),
    ]
    reg = result.registration
    if reg is not None:
        if reg.champion:
            verdict = "now the champion" + (
                "" if reg.previous_champion is None
                else f" (beat {reg.previous_champion:.4f} on test_{config.champion_metric})")
        elif reg.not_compared:
            verdict = f"not the champion: {reg.not_compared}"
        else:
            verdict = (f"champion kept ({reg.previous_champion:.4f} >= "
                       f"{m[config.champion_metric]:.4f} on test_{config.champion_metric})")
        rows.append(("registered model", f"{reg.model_uri}, {verdict}"))
    if result.report:
        rows.append(("report", result.report))
    lines = ["", "=" * 72, "Search summary", "=" * 72, *format_rows(rows)]
    if m:
        lines += ["", evaluate.format_class_report(m)]
    lines += ["", "Open the MLflow UI with `autocnn ui` (or `make ui`)."]
    return "\n".join(lines)
