"""Every tensor a model returns keeps its shape after pruning (issue 24's first kind): the layers
that produce them are found from the traced graph, not taken as "the last layer run"."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import foadx
from foadx.errors import BadInputError
from foadx.pruning.groups import find_output_layers


class TwoOutputs(nn.Module):
    """c1 -> c2 -> mean -> embed -> head, returning two of those as a tuple, a dict or with the map."""

    def __init__(self, form: str) -> None:
        super().__init__()
        self.form = form
        self.c1, self.c2 = nn.Conv2d(3, 8, 3, 1, 1), nn.Conv2d(8, 8, 3, 1, 1)
        self.embed, self.head = nn.Linear(8, 4), nn.Linear(4, 2)

    def forward(self, x: torch.Tensor):
        maps = self.c2(self.c1(x).relu()).relu()
        embedding = self.embed(maps.mean((2, 3)))
        if self.form == "tuple":
            return self.head(embedding), embedding
        if self.form == "dict":
            return {"logits": self.head(embedding), "embedding": embedding}
        return self.head(embedding), maps  # a feature map beside the logits


def shapes(outputs) -> list[tuple[int, ...]]:
    values = outputs.values() if isinstance(outputs, dict) else outputs
    return [tuple(tensor.shape) for tensor in values]


@pytest.mark.parametrize(("form", "protected"), [("tuple", {"head", "embed"}), ("dict", {"head", "embed"}),
                                                 ("map", {"head", "c2"})])
def test_every_returned_tensor_keeps_its_shape(form, protected):
    torch.manual_seed(0)
    model = TwoOutputs(form).eval()
    images = torch.randn(8, 3, 16, 16)
    assert set(find_output_layers(model, images[:2])) == protected  # before: only "head" (the last layer run)
    result = foadx.prune(model, images, ratio=0.5, criterion="l1")
    assert shapes(result.model(images[:2])) == shapes(model(images[:2]))  # before: the embedding shrank 4 -> 2
    cut = {group.name for group in result.plan.groups if len(group.kept) < group.channels}
    assert cut and not cut & protected


def test_a_pruned_two_output_model_exports_and_verifies(tmp_path):
    torch.manual_seed(0)
    images = torch.randn(8, 3, 16, 16)
    result = foadx.prune(TwoOutputs("tuple").eval(), images, ratio=0.5, criterion="l1")
    exported = foadx.export_onnx(result.model, tmp_path / "two.onnx", opset=17, verify_options={"images": images.numpy()})
    assert exported.parity.passed
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp_path / "two.onnx"), providers=["CPUExecutionProvider"])
    assert [tuple(output.shape[1:]) for output in session.get_outputs()] == [(2,), (4,)]


class Grayscale(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2, self.fc = nn.Conv2d(1, 8, 3, 1, 1), nn.Conv2d(8, 8, 3, 1, 1), nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.c2(self.c1(x).relu()).relu().mean((2, 3)))


class TwoInputs(Grayscale):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x + y)


@pytest.mark.parametrize(("model", "fed", "said"), [
    (Grayscale(), torch.randn(4, 3, 16, 16), "expected input[2, 3, 16, 16] to have 1 channels"),
    (TwoInputs(), torch.randn(4, 1, 16, 16), "missing 1 required positional argument: 'y'"),
])
def test_a_model_that_does_not_run_on_the_batch_is_refused_in_one_line(model, fed, said):
    """Issue 24: before, a raw torch RuntimeError or TypeError (exit 1 through the CLI)."""
    with pytest.raises(BadInputError) as refused:
        foadx.prune(model.eval(), fed, ratio=0.5, criterion="l1")
    message = str(refused.value)
    assert message.startswith("the model does not run on what foadx feeds it, one (2, ") and said in message
    assert "\n" not in message


def test_a_grayscale_model_fed_grayscale_prunes():
    result = foadx.prune(Grayscale().eval(), torch.randn(4, 1, 16, 16), ratio=0.5, criterion="l1")
    assert result.plan.model.input_chw == (1, 16, 16) and result.model(torch.randn(2, 1, 16, 16)).shape == (2, 2)
