"""foadx eval --protocol pairs|all and --gallery-model through the CLI: every pair of an image
folder, a RecordIO and the demo's held-out digits; counts and metrics re-computed here from the
model's own embeddings (numpy + scikit-learn); bad input exits 3 in one line and writes nothing."""

import json

import numpy as np
import pytest
import torch

import foadx
from foadx.data.calibration import DEMO_FILE
from foadx.evaluate.api import Preprocessing
from foadx.pruning.artifact import save_artifact
from tests.cli_helpers import error_line, run
from tests.face_fixtures import digits, write_class_folder, write_insightface_folder


def _artifact(folder, seed=0, embedding_size=128, broken=False):
    torch.manual_seed(seed)
    model = foadx.build_model("mobilefacenet", input_size=(32, 32), embedding_size=embedding_size).eval()
    if broken:
        with torch.no_grad():
            model.embedding.bn.running_var.fill_(-1.0)  # finite (NaN weights are refused at load), but sqrt(var) is NaN
    return save_artifact(model, folder)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("face-models")
    return {"a": _artifact(root / "a"), "copy": _artifact(root / "copy"), "other": _artifact(root / "other", seed=1),
            "wide64": _artifact(root / "wide64", embedding_size=64), "nan": _artifact(root / "nan", broken=True)}


def _embeddings(model_folder, images):
    """Flip-summed, L2-normalised embeddings computed here with the module itself."""
    module = foadx.load_pruned(model_folder, "cpu").eval()
    source = foadx.provenance_of(module).source
    batch = torch.from_numpy(Preprocessing((32, 32), tuple(source.mean), tuple(source.std))(np.stack(images)))
    with torch.no_grad():
        raw = (module(batch) + module(batch.flip(3))).double().numpy()
    return raw / np.linalg.norm(raw, axis=1, keepdims=True)


def _upper_pairs(unit, labels):
    scores = unit @ unit.T
    upper = np.triu(np.ones_like(scores, dtype=bool), 1)
    same = labels[:, None] == labels[None, :]
    return scores[upper & same], scores[upper & ~same]


def _report(path):
    return json.loads(path.read_text())


def test_all_pairs_of_an_image_folder_match_an_independent_computation(models, tmp_path):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    write_class_folder(tmp_path / "faces", per_class=(4, 3, 2))
    result = run("eval", models["a"], "--data", tmp_path / "faces", "--protocol", "all", "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    report = _report(tmp_path / "r.json")
    assert report["protocol"] == "all" and len(report["roc"]) == 1
    row = report["roc"][0]
    assert (row["genuine"], row["impostor"], row["cross"]) == (6 + 3 + 1, 4 * 3 + 4 * 2 + 3 * 2, False)
    samples = digits(4, range(3))
    images = [image for label, count in enumerate((4, 3, 2)) for image in [i for i, l in samples if l == label][:count]]
    labels = np.repeat([0, 1, 2], (4, 3, 2))
    genuine, impostor = _upper_pairs(_embeddings(models["a"], images), labels)
    truth = np.r_[np.ones(len(genuine)), np.zeros(len(impostor))]
    assert row["auc"] == pytest.approx(sklearn_metrics.roc_auc_score(truth, np.r_[genuine, impostor]), abs=1e-9)
    first = row["points"][0]  # FAR 0.1 of 26 impostors: two false accepts allowed
    assert first["threshold"] == pytest.approx(np.sort(impostor)[::-1][2], abs=1e-5)
    assert first["tar"] == pytest.approx(np.mean(genuine > np.sort(impostor)[::-1][2]))
    assert row["points"][1] == {"far_target": 0.01, "measurable": False, "tar": None, "far": None, "threshold": None,
                                "tar_error_bound": 0.0, "reason": "26 impostor pairs; FAR 0.01 needs at least 100"}
    assert "FAR 0.01, 0.001, 0.0001, 1e-05, 1e-06 not measurable (26 impostor pairs)" in result.output


def test_cross_model_rows_on_a_recordio(models, tmp_path):
    write_insightface_folder(tmp_path / "rec", identities=range(3), per_identity=4, sets=())
    result = run("eval", models["a"], "--data", tmp_path / "rec" / "train.rec", "--protocol", "all",
                 "--gallery-model", models["copy"], "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    same_model, gallery_own, cross = _report(tmp_path / "r.json")["roc"]
    assert (same_model["genuine"], same_model["impostor"]) == (3 * 6, 66 - 18)
    assert (cross["gallery"], cross["probe"], cross["cross"]) == (str(models["copy"]), str(models["a"]), True)
    assert (cross["genuine"], cross["impostor"]) == (2 * 18, 2 * 48)  # ordered pairs: both directions
    # the gallery model has the same weights: every cross score is a same-model score, twice
    assert cross["auc"] == pytest.approx(same_model["auc"], abs=1e-6)
    assert cross["eer"] == pytest.approx(same_model["eer"], abs=1e-6)
    assert gallery_own["auc"] == pytest.approx(same_model["auc"], abs=1e-6)


def test_cross_model_scores_pair_gallery_and_probe_embeddings(models, tmp_path):
    write_class_folder(tmp_path / "faces", per_class=(3, 3))
    result = run("eval", models["a"], "--data", tmp_path / "faces", "--protocol", "all",
                 "--gallery-model", models["other"], "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    cross = _report(tmp_path / "r.json")["roc"][2]
    samples = digits(3, range(2))
    images, labels = [image for image, _ in samples], np.array([label for _, label in samples])
    probe, gallery = _embeddings(models["a"], images), _embeddings(models["other"], images)
    scores = gallery @ probe.T
    off_diagonal = ~np.eye(len(labels), dtype=bool)
    same = labels[:, None] == labels[None, :]
    genuine, impostor = scores[off_diagonal & same], scores[off_diagonal & ~same]
    assert (cross["genuine"], cross["impostor"]) == (len(genuine), len(impostor)) == (12, 18)
    expected = np.mean(genuine[:, None] > impostor[None, :]) + 0.5 * np.mean(genuine[:, None] == impostor[None, :])
    assert cross["auc"] == pytest.approx(expected, abs=1e-9)


def test_eval_report_renders_a_roc_table_and_figure(models, tmp_path):
    pytest.importorskip("matplotlib")
    write_class_folder(tmp_path / "faces", per_class=(3, 3))
    result = run("eval", models["a"], "--data", tmp_path / "faces", "--protocol", "all",
                 "--gallery-model", models["other"], "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    rendered = run("report", tmp_path / "r.json", "--out", tmp_path / "r.md", "--html", tmp_path / "r.html")
    assert rendered.exit_code == 0, rendered.output
    markdown = (tmp_path / "r.md").read_text()
    assert "| set | gallery | probe | cross | TAR@0.1 | TAR@0.01 |" in markdown
    assert markdown.count("| yes |") == 1 and markdown.count("| no |") == 2
    page = (tmp_path / "r.html").read_text()
    assert "ROC: TAR against FAR (cross-model rows dashed)" in page and page.count("data:image/png;base64,") == 1


def test_pairs_protocol_keeps_ten_folds_and_adds_a_roc(models, tmp_path):
    write_insightface_folder(tmp_path / "ins", identities=range(2), per_identity=2, sets=("lfw",))
    result = run("eval", models["a"], "--data", tmp_path / "ins" / "lfw.bin", "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    report = _report(tmp_path / "r.json")
    assert report["folds"] == 10 and report["pairs"] == 40 and report["protocol"] == "pairs"
    assert [(row["set"], row["genuine"], row["impostor"]) for row in report["roc"]] == [("lfw", 20, 20)]


@pytest.mark.slow
def test_all_pairs_of_the_demo_held_out_digits(models, tmp_path):
    result = run("eval", models["a"], "--data", "demo", "--protocol", "all", "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    row = _report(tmp_path / "r.json")["roc"][0]
    with np.load(DEMO_FILE) as loaded:
        counts = np.bincount(loaded["labels"])[7:]
    genuine = int(sum(n * (n - 1) // 2 for n in counts))
    assert (row["set"], row["genuine"], row["impostor"]) == ("demo digits 7-9", genuine, int(counts.sum()) ** 2 // 2 - int(counts.sum()) // 2 - genuine)
    assert [p["measurable"] for p in row["points"]] == [True] * 5 + [False]


@pytest.mark.parametrize("case, message", [
    ("one identity", "holds 1 identity: all-pairs verification needs at least two"),
    ("singletons", "has one image: no genuine pairs to verify"),
    ("nan", "produced NaN or infinite embeddings for 6 of 6 images"),
    ("embedding size", "the gallery model's embeddings have 64 dimensions, the model's 128"),
    ("input size", "takes 112x112 images, the model 32x32"),
    ("protocol", "--protocol must be pairs or all, got 'every'"),
    ("pairs data", "not identity-labelled images"),
])
def test_bad_input_exits_3_in_one_line_and_writes_nothing(models, tmp_path, case, message):
    per_class = {"one identity": (3,), "singletons": (1, 1, 1)}.get(case, (3, 3))
    write_class_folder(tmp_path / "faces", per_class=per_class)
    model = models["nan"] if case == "nan" else models["a"]
    extra = {"embedding size": ["--gallery-model", models["wide64"]], "input size": ["--gallery-model", "mobilefacenet"]}
    data = tmp_path / "faces"
    if case == "pairs data":
        write_insightface_folder(tmp_path / "ins", identities=range(2), per_identity=2, sets=("lfw",))
        data = tmp_path / "ins" / "lfw.bin"
    protocol = "every" if case == "protocol" else "all"
    result = run("eval", model, "--data", data, "--protocol", protocol, *extra.get(case, []),
                 "--report", tmp_path / "r.json")
    assert result.exit_code == 3 and message in error_line(result), result.output
    assert not (tmp_path / "r.json").exists()


def test_influence_loss_is_the_old_heads_margin_loss_on_known_identities():
    from foadx.train.compat import influence_loss
    from foadx.train.heads import MarginHead

    old = MarginHead(2, 2, "cosface", scale=2.0, margin=0.35).requires_grad_(False)
    old.weight.data = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    embeddings = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    # sample 0: cosines (1, 0), target 1 - 0.35 -> logits (1.3, 0); sample 1's label 5 is unknown to the head
    expected = -np.log(np.exp(1.3) / (np.exp(1.3) + 1.0))
    assert float(influence_loss(old, embeddings, torch.tensor([0, 5]))) == pytest.approx(expected, rel=1e-6)
    assert float(influence_loss(old, embeddings, torch.tensor([7, 5]))) == 0.0


SMALL_FACE = ("--task", "face", "--data", "demo", "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "16",
              "--quiet")


@pytest.mark.slow
def test_finetune_compatible_with_a_face_finetune(tmp_path):
    teacher = tmp_path / "teacher"
    assert run("finetune", "mobilefacenet", "--input-size", "32", *SMALL_FACE, "--out", teacher).exit_code == 0
    result = run("finetune", teacher, *SMALL_FACE, "--compatible-with", teacher, "--compatibility-weight", "0.5",
                 "--out", tmp_path / "student")
    assert result.exit_code == 0, result.output
    plan = json.loads((tmp_path / "student" / "plan.json").read_text())
    assert plan["finetune"]["compatible_with"] == {"model": str(teacher), "method": "bct", "weight": 0.5}
    # the old classifier is the teacher's head as trained, frozen
    from foadx.train.compat import load_old_classifier

    head = load_old_classifier(teacher)
    saved = torch.load(teacher / "checkpoint.pt", weights_only=True)["head"]["weight"]
    assert torch.equal(head.weight, saved) and not head.weight.requires_grad and head.weight.shape == (7, 128)

    without_head = run("finetune", teacher, *SMALL_FACE, "--compatible-with", tmp_path / "student" / "missing",
                       "--out", tmp_path / "refused")
    assert without_head.exit_code == 3 and "holds no checkpoint.pt" in error_line(without_head)
    assert not (tmp_path / "refused").exists()
