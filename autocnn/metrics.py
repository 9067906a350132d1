"""Test-split metrics as a plain dict (scikit-learn), and the figures people look at."""

import numpy as np
from sklearn import metrics as skm

from autocnn.tables import format_table

SUMMARY_KEYS = ("accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro",
                "precision_weighted", "recall_weighted", "f1_weighted")


def compute_metrics(y_true, y_pred, class_names) -> dict:
    """Accuracy, balanced accuracy (the mean of the classes' recalls: every class counts alike,
    however many images it has), precision, recall and F1 (macro, weighted, per class) and the
    confusion matrix."""
    labels = np.arange(len(class_names))
    result = {"accuracy": float(skm.accuracy_score(y_true, y_pred))}
    # Over the classes that have test images, as scikit-learn counts it.
    result["balanced_accuracy"] = float(skm.balanced_accuracy_score(y_true, y_pred))
    for average in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=average, zero_division=0)
        result.update({f"precision_{average}": float(p), f"recall_{average}": float(r),
                       f"f1_{average}": float(f)})
    p, r, f, support = skm.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0)
    result["per_class"] = {
        name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
               "support": int(support[i])}
        for i, name in enumerate(class_names)
    }
    result["confusion_matrix"] = skm.confusion_matrix(y_true, y_pred, labels=labels).tolist()
    return result


CHANCE_P_VALUE = 0.01  # how sure a model must be shown to beat the majority class


def chance_level(y_true, accuracy: float) -> str:
    """Why a model of ``accuracy`` on labels ``y_true`` is not clearly better than always
    answering the most common class, or "" when it is: its number of correct answers must be
    above the majority-class rate by a one-sided binomial test at CHANCE_P_VALUE (a model that
    predicts one class for everything scores exactly that rate)."""
    from scipy.stats import binomtest

    labels = np.asarray(y_true)
    if not len(labels):
        return ""
    majority = np.bincount(labels).max() / len(labels)
    correct = int(round(accuracy * len(labels)))
    p_value = binomtest(correct, len(labels), majority, alternative="greater").pvalue
    if p_value < CHANCE_P_VALUE:
        return ""
    return (f"its test accuracy {accuracy:.4f} is not clearly above the {majority:.4f} of "
            f"always answering the most common class ({len(labels)} test images, p = "
            f"{p_value:.2f})")


def flatten_metrics(result: dict, prefix: str = "test_") -> dict[str, float]:
    """MLflow-ready scalar metrics: test_f1_macro, test_f1_class_<name>, ..."""
    flat = {f"{prefix}{key}": result[key] for key in SUMMARY_KEYS}
    for name, scores in result["per_class"].items():
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        for key in ("precision", "recall", "f1"):
            flat[f"{prefix}{key}_class_{safe}"] = scores[key]
    return flat


def format_per_class(result: dict) -> str:
    """A per-class precision/recall/F1 table, as printed to the console and logged as text."""
    rows = [(name, f"{s['precision']:.4f}", f"{s['recall']:.4f}", f"{s['f1']:.4f}",
             s["support"]) for name, s in result["per_class"].items()]
    return format_table(("class", "precision", "recall", "f1", "support"), rows,
                        right=(1, 2, 3, 4))


def confused_pairs(result: dict, top: int = 5) -> list[tuple[str, str, int, int]]:
    """The ``top`` most frequent mistakes as (true class, predicted class, images, images of
    the true class), most first; pairs never confused are left out."""
    matrix = np.array(result["confusion_matrix"])
    names = list(result["per_class"])
    pairs = [(int(matrix[t, p]), t, p) for t in range(len(names)) for p in range(len(names))
             if t != p and matrix[t, p] > 0]
    pairs.sort(key=lambda pair: (-pair[0], pair[1], pair[2]))
    return [(names[t], names[p], count, int(matrix[t].sum())) for count, t, p in pairs[:top]]


def format_confusions(result: dict, top: int = 5) -> str:
    """The most frequent mistakes in words: "Shirt taken for T-shirt/top: 87 of 1,000 (8.7%)"."""
    pairs = confused_pairs(result, top)
    if not pairs:
        return "No test image was taken for another class."
    lines = [f"  {true} taken for {predicted}: {count:,} of {total:,} ({count / total:.1%})"
             for true, predicted, count, total in pairs]
    return "Most frequent mistakes:\n" + "\n".join(lines)


def format_class_report(result: dict) -> str:
    """The per-class table and the most frequent mistakes, as printed and logged."""
    return f"{format_per_class(result)}\n\n{format_confusions(result)}"


def plot_per_class(result: dict, title: str = "Per class, on the test split"):
    """Precision, recall and F1 per class as bars, beside the confusion matrix with each cell's
    count and its share of the true class's images (the colour: that share)."""
    plt = _pyplot()
    names = list(result["per_class"])
    side = max(3.6, 0.5 * len(names) + 1.8)
    figure, (bars, cells) = plt.subplots(1, 2, figsize=(2 * side + 2.2, side),
                                         gridspec_kw={"width_ratios": [0.85, 1]})
    _draw_class_scores(bars, result, names)
    _draw_confusion(cells, result, names)
    figure.suptitle(f"{title}: accuracy {result['accuracy']:.4f}, macro F1 "
                    f"{result['f1_macro']:.4f}", fontsize=10)
    figure.tight_layout()
    return figure


def _draw_class_scores(ax, result: dict, names: list[str]) -> None:
    """Horizontal bars (precision, recall, F1) per class, the first class at the top."""
    scores = result["per_class"]
    rows = np.arange(len(names))
    for offset, (key, colour) in enumerate(zip(("precision", "recall", "f1"),
                                               ("#9ecae1", "#4292c6", "#08306b"))):
        ax.barh(rows + (offset - 1) * 0.27, [scores[n][key] for n in names], height=0.27,
                color=colour, label=key if key != "f1" else "F1")
    ax.set_yticks(rows, names, fontsize=8)
    ax.invert_yaxis()
    low = min(min(s[k] for k in ("precision", "recall", "f1")) for s in scores.values())
    ax.set_xlim(max(0.0, np.floor(low * 10) / 10 - 0.1) if names else 0.0, 1.0)
    ax.set_xlabel("score")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, ncols=3, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    ax.set_title("precision, recall and F1", fontsize=9, pad=18)


def _draw_confusion(ax, result: dict, names: list[str]) -> None:
    """The confusion matrix, rows the true class: count and row percentage in each cell."""
    matrix = np.array(result["confusion_matrix"])
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    small = 6 if len(names) > 10 else 7
    for t in range(len(names)):
        for p in range(len(names)):
            if matrix[t, p]:
                share = f"{shares[t, p]:.0%}" if round(shares[t, p] * 100) else "<1%"
                ax.text(p, t, f"{matrix[t, p]}\n{share}", ha="center", va="center",
                        fontsize=small, color="white" if shares[t, p] > 0.5 else "black")
    ticks = np.arange(len(names))
    slanted = len(names) > 4 and max(map(len, names)) > 3  # long names would overlap
    ax.set_xticks(ticks, names, fontsize=7, rotation=45 if slanted else 0,
                  ha="right" if slanted else "center", rotation_mode="anchor")
    ax.set_yticks(ticks, names, fontsize=7)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("confusion matrix (count, share of the true class)", fontsize=9)


def plot_history(history: dict, title: str = "Training curves"):
    """Loss and accuracy per epoch from a Keras History.history dict."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key in (metric, f"val_{metric}"):
            if key in history:
                ax.plot(range(1, len(history[key]) + 1), history[key], marker=".", label=key)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
