"""The search report as one self-contained HTML page: every image embedded, no script, no
link it needs to fetch, so it opens the same from disk, from a mail, or in MLflow's artifact
viewer."""

import base64
import html
import io
import time

import markdown

from autocnn.reports import search_plots

# (section title, artifact paths tried in turn, what the figure shows)
FIGURES = (
    ("Per class", ("plots/per_class.png", "plots/confusion_matrix.png"),
     "Precision, recall and F1 per class, and the confusion matrix of the test split."),
    ("Where the model looked", ("explain/class_maps.png",),
     "Grad-CAM on test images: for each class, the two it was surest of and the one it got "
     "wrong most confidently; red marks the evidence for the model's answer."),
    ("Mistakes", ("explain/mistakes.png",),
     "The test images the model was surest of and got wrong."),
    ("Feature maps", ("explain/feature_maps.png",),
     "What each stage of the network makes of one test image per class."),
    ("The first layer's filters", ("explain/filters.png",),
     "The first convolution's kernels: edge and line detectors."),
)
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; padding: 0 1rem;
       color: #1f2328; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { border-bottom: 1px solid #d0d7de; padding-bottom: .3rem; }
figure { margin: 1rem 0; } figure img { max-width: 100%; height: auto; }
figcaption { color: #57606a; font-size: .9rem; }
table { border-collapse: collapse; font-size: .85rem; margin: .5rem 0; }
th, td { border: 1px solid #d0d7de; padding: .2rem .5rem; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.headline { display: flex; gap: 2rem; flex-wrap: wrap; background: #f6f8fa; padding: 1rem;
            border-radius: 6px; }
.headline div span { display: block; font-size: 1.5rem; font-weight: 600; }
pre { background: #f6f8fa; padding: .8rem; overflow-x: auto; font-size: .8rem; }
nav a { margin-right: 1rem; }
"""


def render(record, card: str) -> tuple[str, dict[str, bytes]]:
    """The report of ``record`` (records.SearchRecord, its artifacts downloaded) with its
    model card: the HTML and the search's figures drawn for it (name -> PNG bytes)."""
    drawn = {"search_progress.png": _png(search_plots.plot_progress(record.trials,
                                                                    record.start_ms)),
             "trial_costs.png": _png(search_plots.plot_costs(record.trials)),
             "importance.png": _png(search_plots.plot_importance(record.trials))}
    sections = [("Model card", _demoted(markdown.markdown(card, extensions=["tables"])))]
    for title, paths, caption in FIGURES:
        found = next((record.artifact(p) for p in paths if record.artifact(p)), None)
        if found is not None:
            sections.append((title, _figure(found.read_bytes(), title, caption)))
    sections.append(("The search", _search(record, drawn)))
    curves = record.artifact("plots/retrain_curves.png")
    if curves:
        sections.append(("The final training", _figure(
            curves.read_bytes(), "final training curves",
            "Loss and accuracy per epoch of the final training.")))
    sections.append(("Data", _data(record)))
    return _page(record, sections), drawn


def _page(record, sections) -> str:
    title = f"autocnn report: {record.params.get('dataset', '?')}, run {record.run_id[:8]}"
    nav = " ".join(f'<a href="#s{i}">{html.escape(t)}</a>' for i, (t, _) in enumerate(sections))
    body = "\n".join(f'<section id="s{i}"><h2>{html.escape(t)}</h2>\n{content}</section>'
                     for i, (t, content) in enumerate(sections))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>\n"
            f"<h1>{html.escape(title)}</h1>\n{_headline(record)}\n<nav>{nav}</nav>\n{body}\n"
            f"</body></html>\n")


def _headline(record) -> str:
    m = record.metrics
    started = time.strftime("%Y-%m-%d %H:%M", time.localtime(record.start_ms / 1000))
    cells = [("test accuracy", _number(m.get("test_accuracy"))),
             ("test macro F1", _number(m.get("test_f1_macro"))),
             ("trials", f"{int(m.get('trials_completed', 0))}"),
             ("time", f"{m['elapsed_seconds']:.0f} s" if "elapsed_seconds" in m else "?"),
             ("started", started)]
    cells += [("registered", f"{v['name']} v{v['version']}"
               + (f" ({', '.join(v['aliases'])})" if v["aliases"] else ""))
              for v in record.versions]
    return '<div class="headline">' + "".join(
        f"<div>{html.escape(label)}<span>{html.escape(value)}</span></div>"
        for label, value in cells) + f"</div>\n<p>Experiment {html.escape(record.experiment)}, " \
        f"run {html.escape(record.run_name)} ({record.run_id}), status {record.status}.</p>"


def _search(record, drawn: dict) -> str:
    parts = [_figure(drawn["search_progress.png"], "search progress",
                     "The best validation accuracy so far against wall time. In a "
                     "multi-fidelity search each trial is scored at its own epochs and share "
                     "of the images."),
             _figure(drawn["trial_costs.png"], "score against cost",
                     "Each finished trial's validation accuracy against the seconds it took."),
             _figure(drawn["importance.png"], "hyperparameter importance",
                     "How much of the variation of the trials' scores each hyperparameter "
                     "explains: an estimate, as good as the number of trials behind it."),
             "<h3>Leaderboard</h3>", _leaderboard(record.trials)]
    return "\n".join(parts)


def _leaderboard(trials: list[dict]) -> str:
    ranked = sorted(trials, key=lambda t: (t["score"] is None, -(t["score"] or 0)))
    header = ("rank", "trial", "status", "val accuracy", "epochs", "seconds", "family",
              "warm start", "why it failed")
    rows = []
    for rank, t in enumerate(ranked, start=1):
        cells = (rank, t["trial"], t["status"], _number(t["score"]), t["epochs"] or "",
                 f"{t['seconds']:.0f}" if t["seconds"] is not None else "",
                 t["hyperparameters"].get("family", ""), t["warm_start"], t["reason"])
        rows.append("<tr>" + "".join(
            f'<td class="n">{c}</td>' if isinstance(c, (int, float)) or str(c)[:1].isdigit()
            else f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in header)
    return (f'<table class="leaderboard"><thead><tr>{head}</tr></thead><tbody>'
            f"{''.join(rows)}</tbody></table>")


def _data(record) -> str:
    parts = []
    samples = record.artifact("data/samples.png")
    if samples:
        parts.append(_figure(samples.read_bytes(), "training samples",
                             "Training images of each class."))
    summary = record.artifact("data/summary.txt")
    if summary:
        parts.append(f"<pre>{html.escape(summary.read_text())}</pre>")
    return "\n".join(parts) or "<p>No data summary was logged.</p>"


def _demoted(page: str) -> str:
    """The card's headings two levels down, under the report's own."""
    for level in (2, 1):
        page = page.replace(f"<h{level}>", f"<h{level + 2}>").replace(f"</h{level}>",
                                                                      f"</h{level + 2}>")
    return page


def _figure(png: bytes, alt: str, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _png(figure) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def _number(value) -> str:
    return "" if value is None else f"{value:.4f}"
