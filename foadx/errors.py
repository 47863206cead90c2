"""foadx's exception types; each carries the CLI exit code of docs/design.md.

0 success; 2 usage (Click's own); 3 bad input; 4 parity or accuracy check failed; 5 latency
regression gate failed; 6 missing dependency or hardware; 7 an output cannot be written (full disk,
read-only or forbidden folder); 1 anything unexpected.
"""

from __future__ import annotations


def first_line(error: BaseException, limit: int | None = None) -> str:
    """The first line of ``error``'s message (at most ``limit`` characters), or its type's name
    when it says nothing: what a one-line CLI error quotes of a library's exception."""
    said = str(error).strip()
    return said.splitlines()[0][:limit] if said else type(error).__name__


class FoadxError(Exception):
    """Base class: an error foadx expects and can explain in one line.

    The message speaks the library's words; ``parameters`` names the library parameters it
    mentions (``lr``, ``include_coupled``), so that a front end can say them its own way (the
    CLI shows ``--lr``, ``--include-coupled``)."""

    exit_code = 1

    def __init__(self, message: str = "", *, parameters: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.parameters = tuple(parameters)


class BadInputError(FoadxError, ValueError):
    """The user's model, file, data or option value cannot be used."""

    exit_code = 3


class UnknownModelError(BadInputError):
    """A model spec names no zoo model, torchvision model or importable factory."""


class WeightsError(BadInputError):
    """A weights file is missing, corrupt or does not fit the model."""


class DataError(BadInputError):
    """Calibration data is missing, empty or unreadable."""


class ArtifactError(BadInputError):
    """A pruned-model artifact is missing, corrupt or inconsistent."""


class BudgetError(BadInputError):
    """A pruning budget is out of range or cannot be reached."""


class CheckFailedError(FoadxError):
    """A parity or accuracy check failed."""

    exit_code = 4


class RegressionError(FoadxError):
    """A latency regression gate failed."""

    exit_code = 5


class MissingDependencyError(FoadxError):
    """A required optional package or piece of hardware (TensorRT, a GPU) is absent."""

    exit_code = 6


class OutputError(FoadxError):
    """An output cannot be written: the file system is full, read-only or refuses the write
    (ENOSPC, EDQUOT, EFBIG, EROFS, EACCES, EPERM, EIO). Nothing partial is left behind."""

    exit_code = 7
