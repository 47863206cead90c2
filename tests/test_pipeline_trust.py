"""A pipeline file, a run folder and a sweep folder are data: a spec naming code is refused
without --trust-code, every field is range-checked before work, a foreign --out is refused,
a record that does not check out is re-run (and said so), and changed inputs are never up to
date. Each hostile input is made here."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch

from cli_helpers import error_line, run
from foadx.errors import BadInputError, UnknownModelError
from foadx.models import build_model
from foadx.pipeline import load_pipeline
from foadx.pipeline.outputs import claim_folder, is_run_folder, is_sweep_folder
from foadx.pipeline.sweep import SweepSettings, point_folder, read_point

CHEAP = """\
[model]
spec = "mobilefacenet"
input_size = 32
args = {{ embedding_size = 10 }}
{model}
[data]
source = "demo"
images = 8

[prune]
criteria = {criteria}
ratio = 0.5
"""


def pipeline(folder: Path, model: str = "", criteria: str = '["l1"]', name: str = "p.toml") -> Path:
    path = folder / name
    path.write_text(CHEAP.format(model=model, criteria=criteria))
    return path


def plan(path: Path, out: Path, *extra) -> dict[str, str]:
    """The dry run's plan: stage -> 'status (reason)' (runs nothing)."""
    result = run("run", path, "--out", out, "--dry-run", *extra)
    assert result.exit_code == 0, result.output
    rows = [line.split("|") for line in result.output.splitlines() if line.startswith("| prune")]
    return {row[1].strip(): row[2].strip() for row in rows}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One real [prune] run (its weights file given), shared: tests tamper with copies of it."""
    folder = tmp_path_factory.mktemp("trust")
    torch.manual_seed(0)
    torch.save(build_model("mobilefacenet", (32, 32), embedding_size=10).state_dict(), folder / "w.pt")
    path = pipeline(folder, model=f'weights = "{folder / "w.pt"}"\n')
    result = run("run", path, "--out", folder / "out", "--quiet")
    assert result.exit_code == 0, result.output
    return path, folder / "out"


@pytest.fixture
def copy(finished, tmp_path):
    path, out = finished
    shutil.copytree(out, tmp_path / "out")
    return path, tmp_path / "out"


# kind 1: code named by a file --------------------------------------------------------------

@pytest.mark.parametrize("spec", ["os:system", "evil.py:make"])
def test_a_spec_naming_code_is_refused_without_trust_code(tmp_path, spec):
    marker = tmp_path / "ran"
    (tmp_path / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\ndef make():\n    return 1\n")
    text = (f'[model]\nspec = "{tmp_path / spec if spec.endswith("make") else spec}"\n'
            f'[model.args]\ncommand = "touch {marker}"\n[data]\nsource = "demo"\n[prune]\nratio = 0.5\n')
    (tmp_path / "p.toml").write_text(text)
    result = run("run", tmp_path / "p.toml", "--out", tmp_path / "out")
    assert result.exit_code == 3
    assert re.search(r"p.toml:2: model.spec .* names code.*pass --trust-code", error_line(result))
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_a_trusted_factory_must_return_a_module(tmp_path):
    (tmp_path / "notmodel.py").write_text("def make():\n    return [1, 2]\n")
    spec = f"{tmp_path / 'notmodel.py'}:make"
    with pytest.raises(UnknownModelError, match="returned list, not a torch nn.Module"):
        build_model(spec)
    (tmp_path / "p.toml").write_text(f'[model]\nspec = "{spec}"\n[data]\nsource = "demo"\n[prune]\nratio = 0.5\n')
    result = run("run", tmp_path / "p.toml", "--out", tmp_path / "out", "--trust-code")
    assert result.exit_code == 3 and "returned list, not a torch nn.Module" in error_line(result)
    cli = run("inspect", spec)
    assert cli.exit_code == 3 and "returned list" in error_line(cli)


# kind 12: every field range-checked before work --------------------------------------------

@pytest.mark.parametrize(("section", "line", "message"), [
    ("[export]\n[bench]\nduration_s = inf\n", "bench.duration_s = inf", r"bench.duration_s must be a finite number in \(0"),
    ("[export]\n[bench]\nrounds = 0\n", "bench.rounds = 0", r"bench.rounds must be a whole number in \[1"),
    ("[export]\n[bench]\nbackends = [\"nope\"]\n", "", r"bench.backends must be a non-empty list, each one of ort-cpu"),
    ("[export]\ntarget = \"gpu9\"\n", "", r"export.target must be one of ort-cpu"),
    ("[train]\nepochs = -1\n", "", r"train.epochs must be a whole number"),
    ("[train]\nlr = nan\n", "", r"train.lr must be a finite number"),
    ("[export]\n[verify]\nimages = 0\n", "", r"verify.images must be a whole number"),
])
def test_out_of_range_fields_are_refused_before_any_work(tmp_path, section, line, message):
    path = pipeline(tmp_path)
    path.write_text(path.read_text() + section)
    result = run("run", path, "--out", tmp_path / "out")
    assert result.exit_code == 3 and re.search(message, error_line(result)), result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("criteria", ['["../../../x"]', '["foad", 3]', "[]"])
def test_criterion_names_are_checked_against_the_registry(tmp_path, criteria):
    path = pipeline(tmp_path, criteria=criteria)
    with pytest.raises(BadInputError, match=r"prune.criteria must be a non-empty list(, each one of foad.*)?, got"):
        load_pipeline(path)
    result = run("run", path, "--out", tmp_path / "a" / "b" / "out")
    assert result.exit_code == 3 and "prune.criteria" in error_line(result)
    assert not list(tmp_path.rglob("*.lock")) and not (tmp_path / "a").exists()


def test_fractions_must_lie_in_zero_one(tmp_path):
    path = pipeline(tmp_path)
    path.write_text(path.read_text().replace("ratio = 0.5", "ratio = 1.5"))
    result = run("run", path, "--out", tmp_path / "out")
    assert result.exit_code == 3 and "prune.ratio must be a finite number in (0, 1)" in error_line(result)


@pytest.mark.parametrize("budgets", ["0.3,half", "0.3,nan", "0.3,inf", "1.5"])
def test_sweep_budgets_that_are_not_fractions_are_refused_before_work(tmp_path, budgets):
    result = run("sweep", "resnet56_cifar", "--data", "demo", "--ratio", budgets, "--out", tmp_path / "s")
    assert result.exit_code == 3 and "--ratio" in error_line(result) or "fractions" in error_line(result)
    assert not (tmp_path / "s").exists()


def test_sweep_criteria_are_checked_against_the_registry(tmp_path):
    result = run("sweep", "resnet56_cifar", "--data", "demo", "--ratio", "0.5", "--criterion", "../../x",
                 "--out", tmp_path / "s")
    assert result.exit_code == 3 and "criteria must be names of" in error_line(result)
    assert not (tmp_path / "s").exists() and not list(tmp_path.rglob("*.lock"))


# kind 2: a foreign --out ------------------------------------------------------------------

@pytest.mark.parametrize("command", ["run", "sweep"])
def test_a_foreign_out_is_refused_and_force_replaces_it_whole(tmp_path, command):
    out = tmp_path / "mine"
    (out / "report").mkdir(parents=True)
    (out / "summary.md").write_text("my notes")
    (out / "report.html").write_text("<p>mine</p>")
    arguments = (("run", pipeline(tmp_path), "--out", out, "--dry-run") if command == "run" else
                 ("sweep", "resnet56_cifar", "--data", "demo", "--ratio", "0.5", "--out", out))
    result = run(*arguments)
    assert result.exit_code == 3 and "is not empty and is not an earlier foadx" in error_line(result)
    assert (out / "summary.md").read_text() == "my notes" and (out / "report.html").is_file()
    if command == "run":
        forced = run("run", pipeline(tmp_path), "--out", out, "--dry-run", "--force")
        assert forced.exit_code == 0 and (out / "summary.md").read_text() == "my notes"  # a dry run writes nothing


def test_a_run_resumes_its_own_output_and_force_starts_afresh(copy, tmp_path):
    path, out = copy
    assert plan(path, out) == {"prune": "skipped (up to date)"}
    (out / "notes.txt").write_text("mine")
    refused = run("run", path, "--out", out, "--dry-run")
    assert refused.exit_code == 3 and "not an earlier foadx run output" in error_line(refused)
    (out / "notes.txt").unlink()
    (out / "prune" / "stage.json").unlink()  # a stage folder without its record is not a run's
    assert run("run", path, "--out", out, "--dry-run").exit_code == 3


def test_a_sweep_folder_is_recognised_exactly(tmp_path):
    out = tmp_path / "s"
    (out / "points" / "l1-0.5").mkdir(parents=True)
    (out / "points" / "l1-0.5" / "point.json").write_text("{}")
    (out / "points" / ".l1-0.5.lock").write_text("")
    assert is_sweep_folder(out)
    (out / "report.html").write_text("x")  # without its sweep.json: someone else's page
    assert not is_sweep_folder(out)
    (out / "sweep.json").write_text(json.dumps({"kind": "foadx.sweep"}))
    assert is_sweep_folder(out)
    (out / "points" / "stray.txt").write_text("x")
    assert not is_sweep_folder(out)


# kinds 3 and 15: records are data -----------------------------------------------------------

def _edit(out: Path, change) -> None:
    path = out / "prune" / "stage.json"
    entry = json.loads(path.read_text())
    change(entry)
    path.write_text(json.dumps(entry))


@pytest.mark.parametrize(("change", "reason"), [
    (lambda e: e["record"]["models"].update(l1="/etc/passwd"), r"record.models.l1: '/etc/passwd' is not a normalised"),
    (lambda e: e["record"]["models"].update(l1="prune/../../etc"), r"record.models.l1: 'prune/../../etc' is not"),
    (lambda e: e["record"].update(accuracy="x"), r"record.accuracy must be an object, got str"),
    (lambda e: e["record"]["macs"]["l1"].update(after="many"), r"record.macs.l1.after must be a finite number"),
    (lambda e: e.update(record=[]), r"hash must be a string and record an object"),
    (lambda e: e["files"].update({"/etc/passwd": "0" * 64}), r"files./etc/passwd"),
    (lambda e: e["record"].update(extra=1), r"record.extra is not a field"),
])
def test_a_tampered_record_is_treated_as_absent_and_said_so(copy, change, reason):
    path, out = copy
    _edit(out, change)
    status = plan(path, out)["prune"]
    assert status.startswith("planned (record did not check out: ") and re.search(reason, status), status


def test_a_record_that_is_not_json_or_nested_deep_is_re_run(copy):
    path, out = copy
    (out / "prune" / "stage.json").write_text("[" * 100_000)
    assert plan(path, out)["prune"].startswith("planned (record did not check out: ")
    (out / "prune" / "stage.json").unlink()
    os.mkfifo(out / "prune" / "stage.json")  # never opened: not a regular file
    assert "not a regular file" in plan(path, out)["prune"]


# kind 4: contents, not names ---------------------------------------------------------------

def test_a_deleted_or_changed_output_is_not_up_to_date(copy):
    path, out = copy
    weights = next((out / "prune" / "l1").glob("*.pt"))
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte changed, same size and name
    weights.write_bytes(bytes(data))
    assert re.search(r"record did not check out: .*changed since the stage wrote it", plan(path, out)["prune"])
    weights.unlink()
    assert "record did not check out" in plan(path, out)["prune"]


def test_other_weights_under_the_same_name_are_not_up_to_date(copy):
    path, out = copy
    weights = path.parent / "w.pt"
    saved = weights.read_bytes()
    try:
        torch.manual_seed(1)
        torch.save(build_model("mobilefacenet", (32, 32), embedding_size=10).state_dict(), weights)
        assert plan(path, out)["prune"] == "planned (settings or inputs changed)"
    finally:
        weights.write_bytes(saved)
    assert plan(path, out)["prune"] == "skipped (up to date)"


def test_a_fifo_as_weights_is_refused_before_it_is_opened(tmp_path):
    os.mkfifo(tmp_path / "w.pt")
    path = pipeline(tmp_path, model=f'weights = "{tmp_path / "w.pt"}"\n')
    result = run("run", path, "--out", tmp_path / "out")
    assert result.exit_code == 3 and "model.weights" in error_line(result) and "not a regular file" in error_line(result)


def test_a_tampered_record_is_re_run_for_real(finished):
    path, out = finished
    _edit(out, lambda e: e["record"]["models"].update(l1="/etc/passwd"))
    result = run("run", path, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    entry = json.loads((out / "prune" / "stage.json").read_text())
    assert entry["record"]["models"]["l1"] == "prune/l1" and entry["reason"].startswith("record did not check out: ")


# kinds 3 and 16: sweep points ---------------------------------------------------------------

def test_close_budgets_get_their_own_point_folders(tmp_path):
    first, second = point_folder(tmp_path, "l1", 0.3), point_folder(tmp_path, "l1", 0.3000001)
    assert first != second and first.name == "l1-0.3" and second.name == "l1-0.3000001"
    assert point_folder(tmp_path, "l1", 0.5).name == "l1-0.5"
    SweepSettings("ratio", (0.3, 0.3000001), ("l1",), "demo").check()


@pytest.mark.parametrize(("point", "reason"), [
    ({"reachable": True, "accuracy": 0.5, "macs": 1, "params": 1, "model": "/abs/model"}, "model must be one of"),
    ({"reachable": True, "accuracy": 0.5, "macs": 1, "params": 1, "model": "../x"}, "model must be one of"),
    ({"reachable": True, "accuracy": "high", "macs": 1, "params": 1, "model": "model"}, "accuracy must be"),
    ({"reachable": "yes"}, "reachable must be true or false"),
    ({"reachable": False, "reason": 3}, "reason must be a string"),
])
def test_a_tampered_point_is_made_again(tmp_path, point, reason):
    folder = tmp_path / "points" / "l1-0.5"
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "plan.json").write_text("{}")
    (folder / "point.json").write_text(json.dumps({"criterion": "l1", "budget": 0.5, "key": "k", **point}))
    done, problem = read_point(folder, "l1", 0.5, "k")
    assert done is None and problem.startswith("record did not check out: ") and reason in problem
    assert read_point(folder, "l1", 0.5, "other") == (None, "")  # another sweep's point: stale, not tampered


def test_force_replaces_a_foreign_folder_whole(tmp_path):
    out = tmp_path / "mine"
    (out / "report").mkdir(parents=True)
    (out / "summary.md").write_text("my notes")
    with pytest.raises(BadInputError, match="not an earlier foadx run output"):
        claim_folder(out, lambda folder: is_run_folder(folder, ["prune"]), False, "foadx run")
    assert claim_folder(out, lambda folder: is_run_folder(folder, ["prune"]), True, "foadx run") == out
    assert not out.exists() or not any(out.iterdir())


# found by an attacker after the first round ------------------------------------------------

@pytest.mark.parametrize("key", ["../../escaped", "/tmp/escaped", "..", "a/b"])
def test_a_record_key_that_could_become_a_path_is_treated_as_absent(copy, key):
    """Stages turn the keys of ``models`` into folder names: a key that climbs out must never be used."""
    path, out = copy
    _edit(out, lambda entry: entry["record"]["models"].update({key: "prune/l1"}))
    status = plan(path, out)["prune"]
    assert status.startswith("planned (record did not check out: ") and "is not a plain name" in status, status


def test_a_stage_record_that_is_a_link_is_treated_as_absent(copy, tmp_path):
    path, out = copy
    outside = tmp_path / "outside.json"
    shutil.copy(out / "prune" / "stage.json", outside)  # a valid record, but not the stage's own file
    (out / "prune" / "stage.json").unlink()
    (out / "prune" / "stage.json").symlink_to(outside)
    assert plan(path, out)["prune"] == "planned (record did not check out: stage.json is a link)"


def test_metrics_lines_are_read_as_untrusted(tmp_path):
    from foadx.pipeline.report import read_metrics

    good = tmp_path / "good.jsonl"
    good.write_text('{"epoch": 1, "loss": 2.5}\n\n{"epoch": 2, "loss": 1.5}\n')
    assert [row["loss"] for row in read_metrics(good)] == [2.5, 1.5]
    for name, text, message in (("deep", "[" * 200_000 + "]" * 200_000, "deep.jsonl:1 is not a JSON object"),
                                ("scalar", "1\n", "scalar.jsonl:1: an epoch's metrics need an object"),
                                ("nested", '{"epoch": 1, "x": [[[[[1]]]]]}', "nested deeper than 4")):
        (tmp_path / f"{name}.jsonl").write_text(text)
        with pytest.raises(BadInputError, match=re.escape(message)):
            read_metrics(tmp_path / f"{name}.jsonl")


def test_an_input_that_stat_calls_regular_but_cannot_be_read_is_bad_input():
    from foadx.pipeline.records import file_digest

    with pytest.raises(BadInputError, match="/proc/self/mem cannot be read"):
        file_digest(Path("/proc/self/mem"))
