"""Option objects the command line declares at import time: no heavy imports here, so
``foadx --help`` answers without loading torch."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from foadx.tasks.checks import finite


@dataclass(frozen=True)
class ParitySettings:
    """The comparator's tolerances and strictness (Polygraphy's semantics: an element fails only
    where both ``atol`` and ``rtol`` are exceeded); unset floors take the precision's defaults
    (``foadx.runtime.Tolerances.for_precision``)."""

    atol: float | None = None
    rtol: float | None = None
    min_cosine: float | None = None
    max_scaled_error: float | None = None
    check_error_stat: str = "elemwise"
    error_quantile: float = 0.99
    strict: bool = False

    def tolerances(self, precision: str = "fp32") -> Any:
        """``foadx.runtime.Tolerances`` for ``precision``.

        Raises:
            BadInputError: a non-finite tolerance.
        """
        from foadx.runtime import Tolerances

        for name in ("atol", "rtol", "min_cosine", "max_scaled_error", "error_quantile"):
            finite(name, getattr(self, name))
        chosen = {"error_stat": self.check_error_stat, "error_quantile": self.error_quantile}
        chosen.update({name: getattr(self, name) for name in ("atol", "rtol", "min_cosine", "max_scaled_error")
                       if getattr(self, name) is not None})
        return Tolerances.for_precision(precision, **chosen)

    def without_cosine_floor(self) -> ParitySettings:
        """The same settings with the cosine floor left to the precision's default."""
        return replace(self, min_cosine=None)
