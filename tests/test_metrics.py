import numpy as np
import pytest

from autocnn import metrics as evaluate

# Three classes; the confusion matrix (rows true, columns predicted) is
#   a: [2, 1, 0]
#   b: [0, 3, 1]
#   c: [1, 0, 2]
Y_TRUE = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
Y_PRED = np.array([0, 0, 1, 1, 1, 1, 2, 2, 2, 0])
NAMES = ("a", "b", "c")


def test_metrics_match_a_hand_computed_confusion_matrix():
    m = evaluate.compute_metrics(Y_TRUE, Y_PRED, NAMES)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 3, 1], [1, 0, 2]]
    assert m["accuracy"] == pytest.approx(7 / 10)
    # precision = diagonal / column sum, recall = diagonal / row sum
    precision = [2 / 3, 3 / 4, 2 / 3]
    recall = [2 / 3, 3 / 4, 2 / 3]
    f1 = [2 * p * r / (p + r) for p, r in zip(precision, recall)]
    for i, name in enumerate(NAMES):
        assert m["per_class"][name]["precision"] == pytest.approx(precision[i])
        assert m["per_class"][name]["recall"] == pytest.approx(recall[i])
        assert m["per_class"][name]["f1"] == pytest.approx(f1[i])
    assert m["per_class"]["b"]["support"] == 4
    assert m["balanced_accuracy"] == pytest.approx(np.mean(recall))
    assert m["precision_macro"] == pytest.approx(np.mean(precision))
    assert m["f1_macro"] == pytest.approx(np.mean(f1))
    support = np.array([3, 4, 3])
    assert m["recall_weighted"] == pytest.approx(np.dot(recall, support) / 10)
    assert m["f1_weighted"] == pytest.approx(np.dot(f1, support) / 10)


def test_balanced_accuracy_counts_every_class_alike():
    m = evaluate.compute_metrics(np.array([0, 0, 0, 0, 1]), np.array([0, 0, 0, 0, 0]), NAMES[:2])
    assert m["accuracy"] == pytest.approx(0.8) and m["balanced_accuracy"] == pytest.approx(0.5)


def test_a_class_never_predicted_scores_zero_precision_without_warning():
    m = evaluate.compute_metrics(np.array([0, 1, 2]), np.array([0, 1, 1]), NAMES)
    assert m["per_class"]["c"]["precision"] == 0.0
    assert m["per_class"]["c"]["recall"] == 0.0


def test_flatten_metrics_gives_mlflow_keys_for_summary_and_classes():
    m = evaluate.compute_metrics(Y_TRUE, Y_PRED, ("T-shirt/top", "b", "c"))
    flat = evaluate.flatten_metrics(m)
    assert flat["test_accuracy"] == pytest.approx(0.7)
    assert flat["test_f1_class_T-shirt_top"] == pytest.approx(2 / 3)
    assert len(flat) == len(evaluate.SUMMARY_KEYS) + 3 * 3
    assert all(isinstance(v, float) for v in flat.values())


def test_per_class_table_and_figures(tmp_path):
    m = evaluate.compute_metrics(Y_TRUE, Y_PRED, NAMES)
    table = evaluate.format_per_class(m).splitlines()
    assert table[0].split() == ["class", "precision", "recall", "f1", "support"]
    assert table[2].split() == ["b", "0.7500", "0.7500", "0.7500", "4"]
    fig = evaluate.plot_per_class(m)
    fig.savefig(tmp_path / "per_class.png")
    assert (tmp_path / "per_class.png").stat().st_size > 1000
    bars, cells = fig.axes
    assert [t.get_text() for t in bars.get_yticklabels()] == list(NAMES)
    # Each cell of the matrix: its count and its share of the true class.
    said = {t.get_text() for t in cells.texts}
    assert "3\n75%" in said
    fig = evaluate.plot_history({"loss": [1.0, 0.5], "accuracy": [0.5, 0.8]})
    assert [ax.get_ylabel() for ax in fig.axes] == ["loss", "accuracy"]


def test_the_most_frequent_mistakes_are_named_in_words():
    names = ["T-shirt/top", "Shirt", "Coat"]
    # 3 shirts taken for T-shirts, 1 coat for a shirt, 1 T-shirt for a coat.
    y_true = [0] * 5 + [1] * 6 + [2] * 4
    y_pred = [0, 0, 0, 0, 2] + [0, 0, 0, 1, 1, 1] + [1, 2, 2, 2]
    m = evaluate.compute_metrics(y_true, y_pred, names)
    assert evaluate.confused_pairs(m, top=2) == [("Shirt", "T-shirt/top", 3, 6),
                                                 ("T-shirt/top", "Coat", 1, 5)]
    text = evaluate.format_confusions(m)
    assert "  Shirt taken for T-shirt/top: 3 of 6 (50.0%)" in text.splitlines()
    assert len(text.splitlines()) == 4  # the heading and the three pairs ever confused
    perfect = evaluate.compute_metrics([0, 1], [0, 1], names[:2])
    assert evaluate.format_confusions(perfect) == "No test image was taken for another class."
    assert evaluate.format_class_report(m).startswith(evaluate.format_per_class(m))
