"""Image folders: formats and colour modes, splits, streaming, and every kind of bad file."""

import pytest
from conftest import write_images

from autocnn import data
from autocnn.config import DataConfig
from autocnn.errors import DataError


def test_mixed_formats_and_modes_load_as_rgb(image_folder):
    ds = data.load(DataConfig(str(image_folder), seed=0))
    assert ds.class_names == ("cat", "dog", "eel")
    assert ds.input_shape == (10, 12, 3)  # the most common size; colour present
    assert len(ds.train) + len(ds.val) + len(ds.test) == 18
    assert ds.train.images is None and len(ds.train.paths) == len(ds.train)  # streamed
    x, y = next(iter(ds.batches(ds.train, 64)))
    assert x.shape == (len(ds.train), 10, 12, 3)
    assert 0.0 <= float(x.numpy().min()) and float(x.numpy().max()) <= 1.0


def test_grayscale_resized_and_uncached(image_folder):
    ds = data.load(DataConfig(str(image_folder), image_size=(7, 5), channels=1, cache="none"))
    assert ds.input_shape == (7, 5, 1)
    x, _ = next(iter(ds.batches(ds.test, 64, shuffle=True, seed=1)))
    assert x.shape[1:] == (7, 5, 1)


def test_rgb_becomes_gray_as_luminance(tmp_path):
    from PIL import Image

    for name, colour in (("red", (255, 0, 0)), ("white", (255, 255, 255))):
        (tmp_path / "c" / name).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (4, 4), colour).save(tmp_path / "c" / name / f"{i}.png")
    ds = data.load(DataConfig(str(tmp_path / "c"), channels=1))
    x, y = next(iter(ds.batches(ds.train.concat(ds.val).concat(ds.test), 16)))
    gray = {int(label): float(image.numpy().mean()) for image, label in zip(x, y)}
    assert gray[1] == pytest.approx(1.0, abs=0.01)
    assert gray[0] == pytest.approx(0.299, abs=0.02)


def test_train_val_test_folders_are_used_as_they_are(tmp_path):
    for split, count in (("train", 5), ("val", 2), ("test", 3)):
        for label in ("a", "b"):
            write_images(tmp_path / "p" / split / label, count)
    ds = data.load(str(tmp_path / "p"))
    assert ds.counts() == {"train": [5, 5], "val": [2, 2], "test": [3, 3]}


def test_train_and_test_only_splits_val_from_train(tmp_path):
    for split, count in (("train", 10), ("test", 3)):
        for label in ("a", "b"):
            write_images(tmp_path / "p" / split / label, count)
    ds = data.load(str(tmp_path / "p"))
    assert ds.counts() == {"train": [8, 8], "val": [2, 2], "test": [3, 3]}


def test_skip_bad_files_reports_them(image_folder):
    (image_folder / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    (image_folder / "dog" / "notes.txt").write_text("not an image")
    ds = data.load(DataConfig(str(image_folder), skip_bad_files=True))
    assert [p.rsplit("/", 2)[-2:] for p in ds.skipped] == [["cat", "broken.png"],
                                                           ["dog", "notes.txt"]]
    assert len(ds.train) + len(ds.val) + len(ds.test) == 18
    assert "2 unreadable files skipped" in ds.summary()


def truncate(path):
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


@pytest.mark.parametrize("damage, message", [
    (lambda root: (root / "cat" / "bad.png").write_bytes(b"garbage" * 10),
     r"cat/bad.png: cannot read this image \(not an image, or a format Pillow cannot identify\); "
     r"fix or remove it, or pass --skip-bad-files"),
    (lambda root: truncate(root / "dog" / "002.jpg"),
     r"dog/002.jpg: cannot read this image \(.*\); fix or remove it"),
    (lambda root: (root / "eel" / "readme.txt").write_text("hello"),
     r"eel/readme.txt: cannot read this image \(not an image file: expected jpg, jpeg, png"),
    (lambda root: (root / "fox").mkdir(),
     r"pets/fox: empty class folder; add images or remove the folder"),
    (lambda root: [p.unlink() for p in (root / "eel").iterdir()],
     r"pets/eel: empty class folder"),
])
def test_bad_folders_are_named(image_folder, damage, message):
    damage(image_folder)
    with pytest.raises(DataError, match=message):
        data.load(str(image_folder))


def test_one_class_folder(tmp_path):
    write_images(tmp_path / "only" / "cat", 4)
    with pytest.raises(DataError, match=r"only: only one class folder \(cat\); a classifier "
                                        r"needs at least two"):
        data.load(str(tmp_path / "only"))


def test_class_with_too_few_images_to_split(tmp_path):
    write_images(tmp_path / "few" / "cat", 8)
    write_images(tmp_path / "few" / "dog", 1)
    with pytest.raises(DataError, match=r"class 'dog' has 1 image\(s\) left, too few to split"):
        data.load(str(tmp_path / "few"))


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match=r"nowhere/: no such folder"):
        data.load(str(tmp_path / "nowhere") + "/")


def test_a_split_with_a_class_train_lacks(tmp_path):
    for split, labels in (("train", "ab"), ("test", "abc")):
        for label in labels:
            write_images(tmp_path / "p" / split / label, 3)
    with pytest.raises(DataError, match=r"p/test: class folder\(s\) c are not in train/"):
        data.load(str(tmp_path / "p"))


def test_folder_errors_reach_the_cli_as_one_line(image_folder, capsys):
    from autocnn.cli.main import main

    (image_folder / "cat" / "bad.png").write_bytes(b"garbage")
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "inspect", str(image_folder)])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2
    assert err[-1].startswith("Error: ") and err[-1].endswith("or pass --skip-bad-files")
    assert not any("Traceback" in line for line in err)


@pytest.mark.parametrize("cache", ["memory", "none"])
def test_shuffled_batches_mix_classes_listed_in_order(tmp_path, cache, monkeypatch):
    from autocnn.data import inputs

    monkeypatch.setattr(inputs, "SHUFFLE_BUFFER", 8)  # far smaller than the split
    for label in "abcd":
        write_images(tmp_path / "p" / label, 30, size=(4, 4))
    ds = data.load(DataConfig(str(tmp_path / "p"), cache=cache))
    first = next(iter(inputs.batches(ds.train, ds.input_shape, 16, shuffle=True, seed=0,
                                     cache=cache == "memory")))
    assert len(set(first[1].numpy().tolist())) >= 3  # not one class after another
