"""The model card and the search's figures, from a record made by hand (the whole report, from a
real search and in a real browser, is in tests/test_end_to_end.py)."""

import json

import numpy as np
import pytest

from autocnn import metrics as evaluate
from autocnn.reports import card, page, search_plots
from autocnn.tracking.records import SearchRecord

NAMES = ["T-shirt/top", "Trouser", "Shirt"]


def trial(number, score, seconds=10.0, status="COMPLETED", end=None, **hps):
    return {"trial": number, "status": status, "score": score, "epochs": 3, "seconds": seconds,
            "start_ms": 1000 * number, "end_ms": end if end is not None else 1000 * number + 500,
            "hyperparameters": {k: str(v) for k, v in hps.items()}, "warm_start": "",
            "reason": "" if status == "COMPLETED" else "out of memory", "run_id": f"r{number}"}


@pytest.fixture
def record(tmp_path):
    y_true = [0] * 10 + [1] * 10 + [2] * 10
    y_pred = [0] * 10 + [1] * 10 + [0] * 4 + [2] * 6  # 4 shirts taken for T-shirts
    (tmp_path / "evaluation").mkdir()
    (tmp_path / "evaluation/metrics.json").write_text(
        json.dumps(evaluate.compute_metrics(y_true, y_pred, NAMES)))
    (tmp_path / "data").mkdir()
    (tmp_path / "data/fingerprint.json").write_text(json.dumps(
        {"source": "fashion_mnist", "classes": NAMES, "input_shape": [28, 28, 1],
         "splits": {"train": 48000, "val": 12000, "test": 30}, "digest": "0123456789abcdef"}))
    return SearchRecord(
        run_id="a" * 32, run_name="search-auto", experiment="fm", status="FINISHED",
        start_ms=0, end_ms=60000,
        params={"dataset": "fashion_mnist", "tuner": "auto", "epochs": "20", "seed": "42",
                "time_budget": "900.0", "retrain": "True", "best_family": "vgg",
                "best_filters": "32"},
        metrics={"test_accuracy": 0.8667, "test_f1_macro": 0.86, "trials_completed": 3,
                 "trials_failed": 1, "elapsed_seconds": 60.0, "model_params": 123456,
                 "best_val_accuracy": 0.9},
        tags={"autocnn.machine": "a test machine"},
        trials=[trial(1, 0.5), trial(2, 0.9), trial(3, 0.7), trial(4, None, status="FAILED")],
        versions=[{"name": "fm", "version": 3, "aliases": ["champion"], "description": ""}],
        artifacts=tmp_path)


def test_the_model_card_says_what_the_model_is_how_it_scores_and_where_it_fails(record):
    text = card.model_card(record)
    assert text.startswith("# Model card: fashion_mnist classifier")
    assert "`models:/fm/3` (alias champion)" in text
    assert "fingerprint: `0123456789abcdef`" in text
    assert "train 48,000, val 12,000, test 30" in text
    assert "| Shirt | 1.0000 | 0.6000 | 0.7500 | 10 |" in text
    assert "Weakest classes (F1): Shirt 0.7500" in text
    assert "- Shirt taken for T-shirt/top: 4 of 10 (40.0%)" in text
    assert "parameters: 123,456" in text and "machine: a test machine" in text
    assert "3 completed, 1 failed" in text
    assert "Its weakest class is Shirt" in text
    assert "flips" not in text  # trained without: its test images were scored alone


def test_the_card_says_when_the_test_images_were_scored_with_their_flips(record):
    record.params["best_flip"] = "horizontal"
    assert "scored with its flips (horizontal, as in training) averaged in" in \
        card.model_card(record)


def test_the_card_says_when_the_final_training_fell_otherwise_than_its_trials(record):
    assert "- final training:" not in card.model_card(record)
    record.params |= {"best_lr_schedule": "plateau", "final_lr_schedule": "cosine"}
    assert ("- final training: the learning rate fell on a cosine schedule over the epochs the "
            "budget gave it (its trials: plateau)") in card.model_card(record)


def test_the_card_says_which_images_the_final_training_had(record):
    assert "retrained on train + val." in card.model_card(record)  # as older runs recorded it
    record.params["final_trained_on"] = "train + val (its last epoch)"
    assert "then trained again on train + val (its last epoch)." in card.model_card(record)


def test_a_search_without_evaluation_or_fingerprint_still_has_a_card(record, tmp_path):
    record.artifacts = tmp_path / "nothing"
    text = card.model_card(record)
    assert "Not evaluated (the search ran with --no-evaluate)" in text
    assert "source: `fashion_mnist`" in text


def test_the_progress_line_is_the_best_score_so_far_at_each_trials_end(record):
    figure = search_plots.plot_progress(record.trials, record.start_ms)
    line = figure.axes[0].lines[0]
    assert list(line.get_ydata()) == [0.5, 0.9, 0.9]  # trials 1-3; the failed one has no score
    assert list(line.get_xdata()) == pytest.approx([1.5 / 60, 2.5 / 60, 3.5 / 60])


def test_the_hyperparameter_that_decides_the_score_matters_most():
    rng = np.random.default_rng(0)
    trials = []
    for number in range(1, 21):
        filters, kernel = int(rng.choice([16, 32, 64])), int(rng.choice([3, 5]))
        family = str(rng.choice(["plain", "vgg"]))
        trials.append(trial(number, 0.5 + filters / 200 + rng.normal(0, 0.005), family=family,
                            filters=filters, kernel_size=kernel, dropout=0.2,
                            **{"tuner/trial_id": "00"}))
    ranked = search_plots.importance(trials)
    assert ranked[0][0] == "filters" and ranked[0][1] > 0.8
    assert sum(value for _, value in ranked) == pytest.approx(1.0)
    names = {name for name, _ in ranked}
    assert "dropout" not in names  # constant
    assert "tuner/trial_id" not in names  # the tuner's bookkeeping


def test_too_few_trials_give_no_importance_and_say_so(record):
    assert search_plots.importance(record.trials) == []
    figure = search_plots.plot_importance(record.trials)
    assert "3 finished trials: too few" in figure.axes[0].texts[0].get_text()


def test_a_categorical_or_missing_value_is_encoded_so_a_tree_can_split_it():
    codes = search_plots._encoded(["vgg", None, "plain", "vgg"])
    assert codes.tolist() == [0.0, -1.0, 1.0, 0.0]
    assert search_plots._encoded(["3", "5", None]).tolist() == [3.0, 5.0, 2.0]


def test_the_page_embeds_every_figure_and_ranks_the_trials(record, tmp_path):
    import matplotlib.pyplot as plt

    (tmp_path / "plots").mkdir()
    figure = evaluate.plot_per_class(json.loads((tmp_path / "evaluation/metrics.json")
                                                .read_text()))
    figure.savefig(tmp_path / "plots/per_class.png")
    plt.close(figure)
    html, drawn = page.render(record, card.model_card(record))
    assert set(drawn) == {"search_progress.png", "trial_costs.png", "importance.png"}
    assert html.count('<img src="data:image/png;base64,') == 4  # per class + the three drawn
    assert "http" not in html.replace("http-equiv", "")  # nothing to fetch
    assert "<h3>Model card: fashion_mnist classifier</h3>" in html
    rows = html.split('class="leaderboard"')[1].split("<tbody>")[1].split("</tr>")
    assert '<td class="n">1</td><td class="n">2</td>' in rows[0]  # rank 1 is trial 2 (0.9)
    assert "out of memory" in rows[3]
