"""A network's input contract read off the network itself: how many channels its first layer
takes, and whether its forward runs on the one (N, C, H, W) tensor foadx feeds it.

foadx feeds every PyTorch model exactly one float tensor (N, C, H, W); a model that needs more
inputs, or fails on that tensor for any other reason, is refused here in one line that says what
was fed and what went wrong (CLI exit code 3), before any command does work with it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from foadx.errors import BadInputError, first_line
from foadx.untrusted import MAX_TENSOR_BYTES

# The layers whose weights fix the channel count of what they consume: in_channels / num_features.
_CHANNEL_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d)


def first_layer_channels(model: nn.Module) -> int | None:
    """The input channels of the model's first image layer (the first Conv2d, ConvTranspose2d or
    BatchNorm2d in registration order, which is the order ``__init__`` builds them); None when
    the model has none (e.g. an MLP over flattened pixels)."""
    for module in model.modules():
        if isinstance(module, _CHANNEL_LAYERS):
            return int(module.num_features if isinstance(module, nn.BatchNorm2d) else module.in_channels)
    return None


def forward_refused(shape: Sequence[int], error: BaseException) -> BadInputError:
    """The one-line refusal of a model whose forward failed on a ``shape`` (N, C, H, W) batch:
    what foadx fed it, then the first line of the model's own error."""
    return BadInputError(f"the model does not run on what foadx feeds it, one {tuple(int(v) for v in shape)} "
                         f"(N, C, H, W) tensor: {first_line(error)}")


def check_forward(model: nn.Module, input_chw: Sequence[int]) -> None:
    """Runs ``model`` once, without gradients, on a batch of one zero image (1, C, H, W) on the
    device of its parameters.

    Raises:
        BadInputError: the forward fails (more than one input needed, another channel count, a
            size it cannot take, anything its code raises): ``forward_refused``'s line; or, above
            ``SHAPE_CHECKED_PIXELS``, a layer's output would exceed ``MAX_TENSOR_BYTES`` (exit 3).
    """
    shape = (1, *(int(v) for v in input_chw))
    if shape[2] * shape[3] > SHAPE_CHECKED_PIXELS:
        _refuse_oversized_activations(model, shape)
    parameter = next(model.parameters(), None)
    try:
        with torch.no_grad():
            model(torch.zeros(shape, device=parameter.device if parameter is not None else None))
    except Exception as error:  # the user's forward: any failure is what the user handed in
        raise forward_refused(shape, error) from None


SHAPE_CHECKED_PIXELS = 1024 * 1024  # inputs larger than this are sized without memory before they run


def _refuse_oversized_activations(model: nn.Module, shape: tuple[int, ...]) -> None:
    """Runs ``model`` on a fake (1, C, H, W) tensor (torch's FakeTensorMode: shapes, no memory)
    and refuses it when a module's output would hold more than ``MAX_TENSOR_BYTES``: a plan of a
    few bytes naming a 4096x4096 input made one forward take 24 GB. A model the fake mode cannot
    run is left to the real forward.

    Raises:
        BadInputError: the largest output, named with its module and size.
    """
    from torch._subclasses.fake_tensor import FakeTensorMode

    largest: list[tuple[int, str]] = [(0, "")]
    names = {module: name for name, module in model.named_modules()}

    def record(module: nn.Module, inputs: object, output: object) -> None:
        for tensor in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(tensor, torch.Tensor):
                largest[0] = max(largest[0], (tensor.numel() * tensor.element_size(), names.get(module, "?")))

    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else None
    handles = [module.register_forward_hook(record) for module in model.modules()]
    try:
        with FakeTensorMode(allow_non_fake_inputs=True), torch.no_grad():
            model(torch.zeros(shape, device=device))  # a fake tensor: made in the mode, it holds no memory
    except Exception:  # noqa: BLE001 (an operator the fake mode lacks: the real forward decides)
        return
    finally:
        for handle in handles:
            handle.remove()
    size, name = largest[0]
    if size > MAX_TENSOR_BYTES:
        raise BadInputError(f"at a {'x'.join(map(str, shape))} input, layer {name or 'output'} would hold "
                            f"{size / 2**30:.3g} GiB; foadx refuses any tensor over {MAX_TENSOR_BYTES / 2**30:g} GiB")
