"""Figures of the search itself, from its trial table (records.trial_rows): its progress
against wall time, each trial's score against its cost, and which hyperparameters mattered."""

import numpy as np

MIN_TRIALS = 6  # fewer finished trials than this, and no importance is estimated
# The tuner's own bookkeeping, not a choice about the network; the epochs a trial trained
# (its rung, in a multi-fidelity search) stay, as the fidelity it was scored at.
BOOKKEEPING = ("tuner/trial_id", "tuner/initial_epoch", "tuner/rung", "tuner/bracket",
               "tuner/round")


def scored(trials: list[dict]) -> list[dict]:
    return [t for t in trials if t["status"] == "COMPLETED" and t["score"] is not None]


def plot_progress(trials: list[dict], start_ms: int):
    """The best validation accuracy so far against the minutes since the search started, each
    finished trial a dot where it ended."""
    plt = _pyplot()
    done = sorted(scored(trials), key=lambda t: t["end_ms"] or t["start_ms"])
    figure, ax = plt.subplots(figsize=(6.4, 3.6))
    if done:
        minutes = [((t["end_ms"] or t["start_ms"]) - start_ms) / 60000 for t in done]
        scores = [t["score"] for t in done]
        ax.scatter(minutes, scores, s=18, color="#9ecae1", label="a trial", zorder=2)
        ax.step(minutes, np.maximum.accumulate(scores), where="post", color="#08519c",
                label="best so far", zorder=3)
        ax.set_xlim(0, max(minutes) * 1.05 or 1)
        ax.legend(fontsize=8, loc="lower right")
    else:
        ax.text(0.5, 0.5, "no finished trial", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("minutes since the search started")
    ax.set_ylabel("validation accuracy")
    ax.grid(alpha=0.3)
    ax.set_title(f"The search's progress ({len(done)} finished trials)", fontsize=10)
    figure.tight_layout()
    return figure


def plot_costs(trials: list[dict]):
    """Each finished trial's validation accuracy against its seconds, coloured by family and
    numbered as the console numbers trials."""
    plt = _pyplot()
    done = [t for t in scored(trials) if t["seconds"] is not None]
    figure, ax = plt.subplots(figsize=(6.4, 3.8))
    families = sorted({t["hyperparameters"].get("family", "?") for t in done})
    colours = plt.colormaps["tab10"]
    for index, family in enumerate(families):
        mine = [t for t in done if t["hyperparameters"].get("family", "?") == family]
        ax.scatter([t["seconds"] for t in mine], [t["score"] for t in mine], s=24,
                   color=colours(index % 10), label=family, zorder=2)
    for t in done:
        ax.annotate(str(t["trial"]), (t["seconds"], t["score"]), fontsize=6,
                    xytext=(3, 2), textcoords="offset points")
    if done and max(t["seconds"] for t in done) > 20 * min(t["seconds"] for t in done):
        ax.set_xscale("log")
    if families:
        ax.legend(fontsize=7, title="family", title_fontsize=7, loc="lower right")
    ax.set_xlabel("seconds the trial took")
    ax.set_ylabel("validation accuracy")
    ax.grid(alpha=0.3)
    ax.set_title("Each trial's score against its cost", fontsize=10)
    figure.tight_layout()
    return figure


def importance(trials: list[dict], seed: int = 0) -> list[tuple[str, float]]:
    """How much each hyperparameter explains the finished trials' scores: a random forest's
    impurity importance over the trial table (each hyperparameter that varied; a categorical
    one by its codes, a value missing where the hyperparameter was inactive as its own
    value), largest first and summing to 1; [] with fewer than MIN_TRIALS trials."""
    from sklearn.ensemble import RandomForestRegressor

    done = scored(trials)
    names = sorted({k for t in done for k in t["hyperparameters"]} - set(BOOKKEEPING))
    columns = {name: _encoded([t["hyperparameters"].get(name) for t in done]) for name in names}
    columns = {name: c for name, c in columns.items() if len(set(c.tolist())) > 1}
    if len(done) < MIN_TRIALS or not columns:
        return []
    features = np.column_stack(list(columns.values()))
    forest = RandomForestRegressor(n_estimators=100, random_state=seed)
    forest.fit(features, [t["score"] for t in done])
    ranked = sorted(zip(columns, forest.feature_importances_), key=lambda p: -p[1])
    return [(name, float(value)) for name, value in ranked]


def _encoded(values: list) -> np.ndarray:
    """Numbers as they are, anything else by its order of first appearance; a missing value
    one below the smallest, so a tree can split it off."""
    present = [v for v in values if v is not None]
    try:
        numbers = [float(v) for v in present]
        codes = dict(zip(present, numbers))
    except (TypeError, ValueError):
        codes = {v: float(i) for i, v in enumerate(dict.fromkeys(present))}
    missing = min(codes.values(), default=0.0) - 1
    return np.array([codes[v] if v is not None else missing for v in values])


def plot_importance(trials: list[dict], top: int = 12):
    """The `importance` of the ``top`` hyperparameters as bars, with the trials it rests on."""
    plt = _pyplot()
    ranked = importance(trials)[:top]
    figure, ax = plt.subplots(figsize=(6.4, max(2.4, 0.32 * len(ranked) + 1.4)))
    count = len(scored(trials))
    if ranked:
        ax.barh([name for name, _ in ranked], [value for _, value in ranked], color="#4292c6")
        ax.invert_yaxis()
        ax.set_xlabel("share of the score's variation explained (random forest)")
        ax.tick_params(axis="y", labelsize=8)
        rough = " - a rough estimate" if count < 30 else ""
        ax.set_title(f"Which hyperparameters mattered ({count} finished trials{rough})",
                     fontsize=10)
    else:
        ax.axis("off")
        ax.text(0.5, 0.5, f"{count} finished trials: too few to say which hyperparameters "
                          f"mattered (it takes {MIN_TRIALS})", ha="center", va="center",
                fontsize=9, transform=ax.transAxes, wrap=True)
    figure.tight_layout()
    return figure


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
