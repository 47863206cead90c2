"""insightface dataset folders (train on train.rec, one verification row per *.bin, the task
read from the data) and image folders without a split (--val-split, no scoring on training
images), through the CLI on folders written by independent writers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from foadx.data.labeled import open_labeled, stratified_split
from foadx.data.layout import describe_data, resolve_task
from foadx.errors import DataError
from foadx.evaluate.runner import held_out_split
from foadx.resolve import ModelRef
from tests.cli_helpers import error_line, run
from tests.face_fixtures import write_class_folder, write_insightface_folder

SMALL = ("--input-size", "32", "--epochs", "1", "--batch-size", "8", "--quiet")


@pytest.fixture(scope="module")
def insightface_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faces_digits_28x28")
    write_insightface_folder(folder)
    return folder


def test_the_task_is_read_from_the_data(insightface_folder, tmp_path):
    layout = describe_data(str(insightface_folder))
    assert (layout.kind, layout.task) == ("insightface", "face")
    assert [path.name for path in layout.verification_sets] == ["cfp_fp.bin", "lfw.bin"]
    assert resolve_task(layout, None) == "face" and resolve_task(layout, "face") == "face"
    with pytest.raises(DataError, match=r"--task classify conflicts with .* holds face data \(train.rec in "):
        resolve_task(layout, "classify")
    assert resolve_task(describe_data("demo"), None) == "classify"
    assert resolve_task(describe_data("demo"), None, model="face") == "face"
    write_class_folder(tmp_path / "classes")
    assert describe_data(str(tmp_path / "classes")).task == "classify"
    with pytest.raises(DataError, match="--task face conflicts"):
        resolve_task(describe_data(str(tmp_path / "classes")), "face")


def test_finetune_on_the_folder_and_eval_every_verification_set(insightface_folder, tmp_path):
    result = run("finetune", "mobilefacenet", "--data", insightface_folder, "--out", tmp_path / "face", *SMALL)
    assert result.exit_code == 0, result.output
    plan = json.loads((tmp_path / "face" / "plan.json").read_text())
    assert plan["finetune"]["config"]["task"] == "face"  # inferred: no --task given
    assert plan["finetune"]["training_data"]["source"] == str(insightface_folder.resolve())

    result = run("eval", tmp_path / "face", "--data", insightface_folder, "--report", tmp_path / "eval.json")
    assert result.exit_code == 0, result.output
    rows = result.output.strip().splitlines()
    assert [row.split(":")[0] for row in rows[:2]] == ["cfp_fp", "lfw"]
    assert all("over 10 folds of 40 pairs" in row for row in rows[:2])
    assert [row.split(" [")[0] for row in rows[2:]] == ["cfp_fp", "lfw"]  # a ROC row per set
    assert all("20 genuine / 20 impostor pairs" in row for row in rows[2:])
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["task"] == "face" and sorted(report["sets"]) == ["cfp_fp", "lfw"]
    assert [row["set"] for row in report["roc"]] == ["cfp_fp", "lfw"]
    assert all(0.0 <= entry["accuracy"] <= 1.0 for entry in report["sets"].values())

    conflicting = run("eval", tmp_path / "face", "--data", insightface_folder, "--task", "classify")
    assert conflicting.exit_code == 3 and "conflicts with" in error_line(conflicting)


def test_a_folder_of_only_verification_sets_cannot_be_trained_on(insightface_folder, tmp_path):
    (tmp_path / "lfw.bin").write_bytes((insightface_folder / "lfw.bin").read_bytes())
    result = run("finetune", "mobilefacenet", "--data", tmp_path, "--out", tmp_path / "out", *SMALL)
    assert result.exit_code == 3 and "no train.rec to train on" in error_line(result)


def test_stratified_split_worked_example():
    labels = np.array([0] * 6 + [1] * 5 + [2] * 1)
    train, held_out = stratified_split(labels, 0.2, seed=3)
    # round(0.2 * 6) = 1, round(0.2 * 5) = 1, a single image stays in training
    assert np.bincount(labels[held_out], minlength=3).tolist() == [1, 1, 0]
    assert sorted(np.concatenate([train, held_out]).tolist()) == list(range(12))
    again_train, again_held = stratified_split(labels, 0.2, seed=3)
    assert again_held.tolist() == held_out.tolist()
    with pytest.raises(DataError, match="between 0 and 1"):
        stratified_split(labels, 1.0, seed=0)


def test_an_unsplit_folder_needs_a_split_and_is_never_scored_on_training_images(tmp_path):
    write_class_folder(tmp_path / "classes", loose=2)
    refused = run("finetune", "resnet56_cifar", "--data", tmp_path / "classes", "--out", tmp_path / "m", *SMALL)
    assert refused.exit_code == 3 and "--val-split 0.2" in error_line(refused)

    result = run("finetune", "resnet56_cifar", "--data", tmp_path / "classes", "--val-split", "0.2",
                 "--out", tmp_path / "m", *SMALL)
    assert result.exit_code == 0, result.output
    assert "foadx: warning: ignored 2 image(s) loose in" in result.output
    split = json.loads((tmp_path / "m" / "plan.json").read_text())["finetune"]["training_data"]["split"]
    assert split == {"val_split": 0.2, "seed": 0, "train_images": 10, "held_out_images": 2}

    evaluated = run("eval", tmp_path / "m", "--data", tmp_path / "classes", "--json")
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads(evaluated.output)
    assert report["count"] == 2 and report["held_out"]["val_split"] == 0.2  # the recorded split, not all 12

    other = run("eval", tmp_path / "m", "--data", tmp_path / "classes", "--val-split", "0.5")
    assert other.exit_code == 3 and "holding out --val-split 0.2" in error_line(other)


def test_a_model_trained_on_a_whole_folder_is_not_scored_there(tmp_path):
    write_class_folder(tmp_path / "classes")
    source = str((tmp_path / "classes").resolve())
    trained_whole = ModelRef("m", "artifact", (3, 32, 32), training_data={"source": source, "split": None})
    layout = describe_data(str(tmp_path / "classes"))
    with pytest.raises(DataError, match="fine-tuned on every image .* --allow-train-overlap"):
        held_out_split(trained_whole, layout, None, 0, allow_train_overlap=False)
    assert held_out_split(trained_whole, layout, None, 0, allow_train_overlap=True) is None
    stranger = ModelRef("m", "spec", (3, 32, 32))
    assert held_out_split(stranger, layout, None, 0, False) is None  # a test set of its own: all of it
    assert held_out_split(stranger, layout, 0.25, 7, False) == (0.25, 7)


def test_explicit_splits_keep_the_training_class_order(tmp_path):
    write_class_folder(tmp_path / "data", per_class=(3, 3, 3), split=True)
    for file in (tmp_path / "data" / "val" / "class0").iterdir():
        file.unlink()
    (tmp_path / "data" / "val" / "class0").rmdir()
    val = open_labeled(str(tmp_path / "data"), "test")
    assert sorted(set(val.labels.tolist())) == [1, 2]  # class1 is still label 1 without class0 in val/
    (tmp_path / "data" / "val" / "extra").mkdir()
    with pytest.raises(DataError, match="class folders the training split lacks: extra"):
        open_labeled(str(tmp_path / "data"), "test")
    only_train = tmp_path / "only"
    write_class_folder(only_train, per_class=(2, 2), split=True)
    for folder in sorted((only_train / "val").rglob("*"), reverse=True):
        folder.unlink() if folder.is_file() else folder.rmdir()
    (only_train / "val").rmdir()
    with pytest.raises(DataError, match="train/ but no val/ or test/"):
        open_labeled(str(only_train), "test")


def test_prune_calibrates_on_the_folders_records(insightface_folder, tmp_path):
    result = run("prune", "mobilefacenet", "--input-size", "32", "--data", insightface_folder, "--flops-target", "0.3",
                 "--images", "32", "--out", tmp_path / "p", "--quiet")
    assert result.exit_code == 0, result.output
    calibration = json.loads((tmp_path / "p" / "plan.json").read_text())["calibration"]
    assert calibration["source"].startswith("records ") and calibration["available"] == 84
