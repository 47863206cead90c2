"""The latency lookup table: unit keys -> median milliseconds on one backend, with what it was
measured for (model, input size, batch, backend, legal widths) and where (the environment
fingerprint). A versioned JSON file; a table made elsewhere or for another model is refused
for planning, naming the field that differs.

A unit measured at three or more widths of one channel axis (the others as in the key) is read
through a robust straight line along that axis (``fit.py``), so that one entry timed in a slow
moment does not steer the plan. Otherwise an entry is read as measured, and a key not in the
table is interpolated linearly along the one channel axis it differs in, between the nearest
measured widths below and above; with only wider ones measured it takes the next wider one
(rounding up); it is never taken as free.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from foadx.atomic import write_json
from foadx.errors import ArtifactError, BadInputError
from foadx.latency import table_fields as fields
from foadx.latency.fit import MIN_FIT_POINTS, AffineFit, repeated_median
from foadx.latency.table_fields import MAX_LUT_BYTES, FieldError
from foadx.latency.units import UnitKey
from foadx.untrusted import MAX_DEPTH, check_depth, read_text

LUT_KIND = "foadx.latency_lut"
LUT_SCHEMA_VERSION = 3  # 2: whole-network check points (the savings curve); 3: the mode, in-network savings
READABLE_VERSIONS = (2, 3)  # a version 2 table is a unit-mode one
MODES = ("unit", "network")
IDENTITY_FIELDS = ("model", "input_size", "batch", "backend", "precision")
ENVIRONMENT_FIELDS = ("cpu", "cores", "onnxruntime", "torch", "openvino", "gpu")
AXES = ("out_channels", "in_channels")
SeriesKey = tuple[str, UnitKey]  # a channel axis, and a key with that axis zeroed


class MissingLatencyError(BadInputError):
    """A unit's latency can neither be found nor bounded from the table."""


@dataclass
class LatencyTable:
    """A profiled latency table (docs/latency.md section 1): unit key -> median ms on one
    backend, with its identity (model spec@plan digest, input (H, W), batch, backend, precision),
    the width step ``round_to``, the environment fingerprint, the whole unpruned network's median
    ``network_ms`` and the whole-network check points of the savings curve (section 2)."""

    model: str  # the model's spec and plan digest it was profiled from
    input_size: tuple[int, int]
    batch: int
    backend: str
    precision: str
    round_to: int
    environment: dict[str, Any]
    network_ms: float  # the whole unpruned network, measured
    entries: dict[UnitKey, float] = field(default_factory=dict)  # unit key -> median ms
    # whole networks at uniform widths, each timed beside the unpruned one: the savings curve's
    # points (foadx.latency.curve, docs/latency.md section 2)
    checks: list[dict[str, Any]] = field(default_factory=list)
    # "unit": units timed alone (entries); "network": each group's widths timed inside the whole
    # network (group -> width -> relative saving against the unpruned network timed beside it)
    mode: str = "unit"
    network_savings: dict[str, dict[int, float]] = field(default_factory=dict)

    # the entries by series (one axis varying), and the lines fitted through them; rebuilt after an add
    _index: dict[SeriesKey, dict[int, float]] | None = field(default=None, init=False, repr=False, compare=False)
    _fits: dict[SeriesKey, AffineFit] = field(default_factory=dict, init=False, repr=False, compare=False)

    def add(self, key: UnitKey, ms: float) -> None:
        """Records (or replaces) a unit's median latency in ms."""
        self.entries[key] = float(ms)
        self._index = None
        self._fits.clear()

    def __contains__(self, key: UnitKey) -> bool:
        return key in self.entries

    def lookup(self, key: UnitKey) -> float:
        """The key's latency in ms: through the fitted line of its series where there is one and
        the width lies within it, else as measured, else bounded by its neighbours.

        Raises:
            MissingLatencyError: neither the key nor a wider neighbour on one channel axis was
                measured (CLI exit code 3: profile again).
        """
        along = [(getattr(key, axis), (axis, _without(key, axis))) for axis in AXES]
        for wanted, series_key in along:
            fitted = self._fitted(series_key, wanted)
            if fitted is not None:
                return fitted
        found = self.entries.get(key)
        return found if found is not None else self._bound(key, along)

    def _series_index(self) -> dict[SeriesKey, dict[int, float]]:
        """Every series (one unit along one channel axis): its measured widths -> ms."""
        if self._index is None:
            self._index = {}
            for entry, ms in self.entries.items():
                for axis in AXES:
                    self._index.setdefault((axis, _without(entry, axis)), {})[getattr(entry, axis)] = ms
        return self._index

    def _series(self, series_key: SeriesKey) -> dict[int, float]:
        """The measured widths (-> ms) of one series."""
        return self._series_index().get(series_key, {})

    def longest_series(self) -> int:
        """The most widths measured for one unit along one channel axis (0 for no entries)."""
        return max((len(series) for series in self._series_index().values()), default=0)

    def _fitted(self, series_key: SeriesKey, wanted: int) -> float | None:
        measured = self._series(series_key)
        if len(measured) < MIN_FIT_POINTS or wanted > max(measured):
            return None
        if series_key not in self._fits:
            self._fits[series_key] = repeated_median(measured)
        return self._fits[series_key].at(wanted)

    def _bound(self, key: UnitKey, along: list[tuple[int, SeriesKey]]) -> float:
        for wanted, series_key in along:
            same = self._series(series_key)
            below = [width for width in same if width < wanted]
            above = [width for width in same if width > wanted]
            if above and below:
                low, high = max(below), min(above)
                return same[low] + (same[high] - same[low]) * (wanted - low) / (high - low)
            if above:
                return same[min(above)]
        raise MissingLatencyError(f"no measured latency for {key.to_json()} or a wider neighbour: profile again")

    def group_saving(self, group: str, width: int) -> float:
        """The relative saving of ``group`` at ``width`` (the rest whole) in a network-mode table
        (its full width is recorded with saving 0): linear between the measured widths, made
        non-increasing in the width (a wider group never saves more; a point that does is timing
        noise and the narrower one's saving holds), and outside them the nearest one's saving.

        Raises:
            MissingLatencyError: the group was not profiled (CLI exit code 3: profile again).
        """
        measured = self.network_savings.get(group)
        if not measured:
            raise MissingLatencyError(f"the latency table holds no in-network savings for group {group}: "
                                      "profile again with the same groups")
        knots, highest = [], -1.0
        for knot_width, saving in sorted(measured.items(), reverse=True):  # from the widest down
            highest = max(highest, saving)
            knots.insert(0, (knot_width, highest))
        if width <= knots[0][0]:
            return knots[0][1]
        for (w0, s0), (w1, s1) in zip(knots, knots[1:]):
            if width <= w1:
                return s0 + (s1 - s0) * (width - w0) / (w1 - w0)
        return knots[-1][1]

    def identity(self) -> dict[str, Any]:
        """What the table was measured for: model, input_size [H, W], batch, backend, precision."""
        return {"model": self.model, "input_size": list(self.input_size), "batch": self.batch,
                "backend": self.backend, "precision": self.precision}

    def to_json(self) -> dict[str, Any]:
        """The table file's JSON (kind ``foadx.latency_lut``, schema ``LUT_SCHEMA_VERSION``), entries sorted by key."""
        return {"schema_version": LUT_SCHEMA_VERSION, "kind": LUT_KIND, **self.identity(), "round_to": self.round_to,
                "environment": self.environment, "network_ms": self.network_ms,
                "checks": self.checks, "mode": self.mode,
                "network_savings": [{"group": group, "width": width, "saving": saving}
                                    for group, savings in sorted(self.network_savings.items())
                                    for width, saving in sorted(savings.items())],
                "entries": sorted(({"key": key.to_json(), "ms": ms} for key, ms in self.entries.items()),
                                  key=lambda entry: json.dumps(entry["key"], sort_keys=True))}

    def digest(self) -> str:
        """sha256 of the canonical JSON; a latency prune records it as ``lut_digest``."""
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()

    def save(self, path: str | Path) -> None:
        """Writes the table's JSON to ``path`` atomically."""
        write_json(path, self.to_json())


def _without(key: UnitKey, axis: str) -> UnitKey:
    """The key with the channel axis that varies zeroed: for a depthwise unit (in = out =
    groups) all three move together."""
    if key.groups > 1 and key.groups == key.in_channels == key.out_channels:
        return replace(key, in_channels=0, out_channels=0, groups=0)
    return replace(key, **{axis: 0})


def _fail(path: Path, message: str) -> None:
    raise ArtifactError(f"{path}: not a foadx latency table: {message}")


def load_table(path: str | Path) -> LatencyTable:
    """Reads a latency table written by ``LatencyTable.save``, every field range-checked
    (``foadx.latency.table_fields``) before anything is planned with it.

    Raises:
        BadInputError: missing, not a regular file (a FIFO is refused unopened), over
            ``MAX_LUT_BYTES``, nested too deep, not JSON (exit 3).
        ArtifactError: not a foadx latency table, or a field missing or out of range; the one
            line names the field (exit 3).
    """
    path = Path(path)
    text = read_text(path, "latency table", MAX_LUT_BYTES)
    try:
        data = json.loads(text)
    except RecursionError:
        _fail(path, f"nested deeper than {MAX_DEPTH} levels")
    except ValueError as error:
        _fail(path, f"not JSON: {str(error).splitlines()[0]}")
    check_depth(data, f"latency table {path}")
    if not isinstance(data, dict) or data.get("kind") != LUT_KIND or data.get("schema_version") not in READABLE_VERSIONS:
        _fail(path, f"expected kind {LUT_KIND!r}, schema version {' or '.join(map(str, READABLE_VERSIONS))}")
    try:
        table = _table_from(data)
        _check_series(table)
    except KeyError as error:
        _fail(path, f"bad field: {error.args[0]} is missing")
    except FieldError as error:
        _fail(path, f"bad field: {error}")
    return table


def _table_from(data: dict[str, Any]) -> LatencyTable:
    """The table ``data`` describes, each field checked (``FieldError`` names the first bad one)."""
    if not isinstance(data["environment"], dict):
        raise FieldError("environment must be an object")
    table = LatencyTable(fields.text(data["model"], "model"),
                         fields.pair(data["input_size"], "input_size", 1, fields.MAX_SIDE),
                         fields.integer(data["batch"], "batch", 1, fields.MAX_BATCH),
                         fields.text(data["backend"], "backend"), fields.text(data["precision"], "precision"),
                         fields.integer(data["round_to"], "round_to", 1, fields.MAX_ROUND_TO),
                         data["environment"], fields.milliseconds(data["network_ms"], "network_ms"),
                         checks=[_check(point, f"checks[{index}]") for index, point in
                                 enumerate(fields.array(data["checks"], "checks", 0, fields.MAX_CHECKS))])
    if data["schema_version"] >= 3:
        table.mode = fields.one_of(data["mode"], "mode", MODES)
        for index, point in enumerate(fields.array(data["network_savings"], "network_savings",
                                                   1 if table.mode == "network" else 0, fields.MAX_ENTRIES)):
            group, width, saving = _network_point(point, f"network_savings[{index}]")
            table.network_savings.setdefault(group, {})[width] = saving
    entries = fields.array(data["entries"], "entries", 1 if table.mode == "unit" else 0, fields.MAX_ENTRIES)
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise FieldError(f"entries[{index}] must be an object with key and ms")
        ms = fields.milliseconds(entry["ms"], f"entries[{index}].ms")  # finite and > 0, not merely non-negative
        key = fields.unit_key(entry["key"], f"entries[{index}].key")
        if key in table:
            raise FieldError(f"entries[{index}].key repeats an earlier entry's key: which latency holds?")
        table.add(key, ms)
    return table


def _check_series(table: LatencyTable) -> None:
    """Refuses a series (one unit along one axis) too long to fit a line through in time."""
    longest = table.longest_series()
    if longest > fields.MAX_SERIES_POINTS:
        raise FieldError(f"entries hold one unit at {longest:,} widths of one channel axis; "
                         f"at most {fields.MAX_SERIES_POINTS:,} are read")


def _check(point: Any, where: str) -> dict[str, float]:
    """One whole-network check point: finite numbers only."""
    if not isinstance(point, dict):
        raise FieldError(f"{where} must be an object")
    return {name: fields.finite(point[name], f"{where}.{name}")
            for name in ("fraction", "predicted_saving", "measured_saving")}


def _network_point(point: Any, where: str) -> tuple[str, int, float]:
    """One in-network saving: a group name, a width and a saving in (-1, 1)."""
    if not isinstance(point, dict):
        raise FieldError(f"{where} must be an object with group, width and saving")
    saving = fields.finite(point["saving"], f"{where}.saving")
    if not -1.0 < saving < 1.0:
        raise FieldError(f"{where}.saving is {saving}; a saving relative to the unpruned network lies in (-1, 1)")
    return (fields.text(point["group"], f"{where}.group"),
            fields.integer(point["width"], f"{where}.width", 1, fields.MAX_CHANNELS), saving)


def check_compatible(table: LatencyTable, expected: LatencyTable, allow_foreign: bool) -> None:
    """Refuses a table made for another model, size, batch, backend or precision (exit 3), or in
    another environment unless ``allow_foreign``."""
    for name in IDENTITY_FIELDS:
        have, want = table.identity()[name], expected.identity()[name]
        if have != want:
            raise BadInputError(f"the latency table was profiled for {name} {have!r}, this prune needs {want!r}: "
                                "profile again with foadx profile")
    if allow_foreign:
        return
    for name in ENVIRONMENT_FIELDS:
        have, want = table.environment.get(name), expected.environment.get(name)
        if have != want:
            raise BadInputError(f"the latency table was measured where {name} is {have!r}, here it is {want!r}; "
                                "latency does not carry across machines: profile here or pass --allow-foreign-lut")


def environment_key(description: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``describe_environment()`` that change latency."""
    libraries = description.get("libraries", {})
    return {"cpu": description.get("cpu"), "cores": description.get("cpu_count"),
            "onnxruntime": libraries.get("onnxruntime"), "torch": libraries.get("torch"),
            "openvino": libraries.get("openvino"), "gpu": description.get("gpu")}
