"""The CLI as a thin skin over the task layer: a library error names the library's parameter and
the command shows it as the flag the user typed; options that a task would ignore are refused;
every refusal comes before any work (one line, exit 3, nothing written)."""

from __future__ import annotations

import pytest

from foadx.errors import BadInputError, BudgetError
from foadx.pruning.select import Budget
from foadx.tasks.checks import at_least, finite
from foadx_cli.app import in_flags
from tests.test_cli import error_line, run

PRUNE = ("prune", "resnet56_cifar", "--data", "demo", "--images", "8")


def test_library_errors_name_parameters_and_the_cli_writes_them_as_flags():
    with pytest.raises(BudgetError) as budget:
        Budget(ratio=0.3, flops_target=0.3).validate("foad")
    assert str(budget.value) == "give one budget, not ratio and flops_target"
    assert budget.value.parameters == ("ratio", "flops_target")
    flags = {"ratio", "flops_target", "round_to"}
    assert in_flags(str(budget.value), budget.value.parameters, flags) == "give one budget, not --ratio and --flops-target"
    with pytest.raises(BadInputError) as images:
        at_least("images", 0, 1)
    assert in_flags(str(images.value), images.value.parameters, {"images"}) == "--images must be >= 1, got 0"
    # a parameter the command does not have stays in the library's words
    assert in_flags(str(images.value), images.value.parameters, {"count"}) == "images must be >= 1, got 0"
    with pytest.raises(BadInputError, match="far must be a finite number"):
        finite("far", float("nan"))


@pytest.mark.parametrize(("extra", "expected"), [
    (("--ratio", "1.5"), "foadx: error: --ratio must be in (0, 1), got 1.5"),
    (("--ratio", "0.3", "--flops-target", "0.3"), "foadx: error: give one budget, not --ratio and --flops-target"),
    (("--ratio", "0.3", "--round-to", "0"), "foadx: error: --round-to must be >= 1, got 0"),
    (("--ratio", "0.3", "--min-keep", "0.5"), "foadx: error: --min-keep applies only with --latency-target"),
    (("--ratio", "0.3", "--backend", "openvino", "--allocation", "global"),
     "foadx: error: --backend, --allocation apply only with --latency-target"),
])
def test_prune_refusals_speak_in_flags_before_any_work(tmp_path, extra, expected):
    result = run(*PRUNE, "--out", str(tmp_path / "out"), *extra)
    assert result.exit_code == 3 and error_line(result) == expected
    assert not (tmp_path / "out").exists()


def test_export_refuses_an_opset_before_building_the_model(tmp_path):
    result = run("export", "resnet56_cifar", "--out", str(tmp_path / "m.onnx"), "--opset", "0")
    assert result.exit_code == 3 and error_line(result).startswith("foadx: error: --opset must be in ")
    assert "random" not in result.output and not list(tmp_path.iterdir())  # no weights note: nothing was built


@pytest.mark.parametrize("field", ["warmup_ms", "duration_s"])
def test_timing_refuses_what_is_not_a_finite_time(field):
    """The runtime's TimingSettings is the one timing object (the task layer had a copy); NaN
    compares false with every bound, so it is refused by name, not by a range test."""
    from foadx.runtime.timing import TimingSettings

    with pytest.raises(BadInputError, match="finite"):
        TimingSettings(**{field: float("nan")})
    with pytest.raises(BadInputError, match="finite"):
        TimingSettings(**{field: float("inf")})
