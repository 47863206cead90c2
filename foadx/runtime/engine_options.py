"""How a TensorRT engine is built, shared by the Python builder and trtexec: precision, the
optimization profile of the dynamic batch, workspace and timing cache."""

from __future__ import annotations

from dataclasses import dataclass

from foadx.errors import BadInputError

ENGINE_PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class EngineProfile:
    """The optimization profile of the dynamic batch: min <= opt <= max."""

    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise BadInputError(
                f"the batch profile needs 1 <= min <= opt <= max, got {self.min_batch}/{self.opt_batch}/{self.max_batch}"
            )

    @classmethod
    def fixed(cls, batch: int) -> "EngineProfile":
        """``export --batch N --trt``: min = opt = max = N."""
        return cls(batch, batch, batch)

    @classmethod
    def tuned_for(cls, batch: int, at_least: int = 1) -> "EngineProfile":
        """A profile from 1 to max(batch, at_least), tuned for ``batch`` (what a benchmark times)."""
        return cls(1, batch, max(batch, at_least))

    def shapes(self, chw: tuple[int, int, int]) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """The (min, opt, max) input shapes, each (N, C, H, W), of an image of ``chw``."""
        return tuple((batch, *chw) for batch in (self.min_batch, self.opt_batch, self.max_batch))


@dataclass(frozen=True)
class EngineOptions:
    """``precision``: fp32, fp16, or int8 (from a Q/DQ ONNX: explicit quantization)."""

    precision: str = "fp16"
    profile: EngineProfile = EngineProfile()
    workspace_gb: float | None = None
    timing_cache: str | None = None

    def __post_init__(self) -> None:
        if self.precision not in ENGINE_PRECISIONS:
            raise BadInputError(f"--precision must be one of {', '.join(ENGINE_PRECISIONS)}, got {self.precision!r}")
        if self.workspace_gb is not None and not self.workspace_gb > 0:
            raise BadInputError(f"--workspace-gb must be positive, got {self.workspace_gb}")
