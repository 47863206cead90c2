"""insightface / MXNet RecordIO (``train.rec`` + ``train.idx``), read without mxnet.

Framing (dmlc-core recordio): every chunk is ``magic 0xCED7230A (uint32 LE)``, a length word
whose low 29 bits are the chunk length and top 3 bits a continuation flag (0 whole record,
1 first part, 2 middle part, 3 last part), the payload, and zero padding to 4 bytes. The writer
splits a record wherever its payload holds the magic word at a 4-byte-aligned offset and drops
those 4 bytes; the reader puts the magic back between the parts.

Image records (``mx.recordio.pack``): a 24-byte header ``<IfQQ`` (flag, label, id, id2); when
flag > 0 the label is ``flag`` float32 values following the header. insightface's record 0 has
the label pair (first identity record, end of identity records): images are records
1 .. first-1, and each identity record holds its images' index range. ``property`` says
"classes,height,width".
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from foadx.errors import DataError

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
LENGTH_MASK = (1 << 29) - 1
HEADER_FORMAT = "<IfQQ"
HEADER_SIZE = struct.calcsize(HEADER_FORMAT)  # 24


def _padded(length: int) -> int:
    return (length + 3) & ~3


class RecordFile:
    """Random access to the records of a ``.rec`` file through its ``.idx`` (index<TAB>offset)."""

    def __init__(self, rec_path: str | Path, idx_path: str | Path | None = None) -> None:
        self.path = Path(rec_path)
        idx = Path(idx_path) if idx_path else self.path.with_suffix(".idx")
        for required in (self.path, idx):
            if not required.is_file():
                raise DataError(f"RecordIO file not found: {required}")
        self.size = self.path.stat().st_size
        self.offsets = self._read_index(idx)
        self._stream = open(self.path, "rb")

    def _read_index(self, idx: Path) -> dict[int, int]:
        offsets: dict[int, int] = {}
        for number, line in enumerate(idx.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                key, offset = (int(part) for part in line.split("\t"))
            except ValueError:
                raise DataError(f"{idx}:{number}: expected 'index<TAB>offset', got {line!r}") from None
            if not 0 <= offset <= self.size - 8:
                raise DataError(f"{idx}:{number}: record {key} at offset {offset} is past the end of {self.path} ({self.size} bytes)")
            offsets[key] = offset
        if not offsets:
            raise DataError(f"{idx} lists no records")
        return offsets

    def close(self) -> None:
        self._stream.close()

    def __getstate__(self) -> dict:  # DataLoader workers reopen the file
        state = dict(self.__dict__)
        del state["_stream"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._stream = open(self.path, "rb")

    def read(self, key: int) -> bytes:
        if key not in self.offsets:
            raise DataError(f"{self.path}: no record {key} in its index")
        self._stream.seek(self.offsets[key])
        parts: list[bytes] = []
        while True:
            offset = self._stream.tell()
            head = self._stream.read(8)
            if len(head) < 8:
                raise DataError(f"{self.path}: truncated record header at offset {offset}")
            magic, word = struct.unpack("<II", head)
            if magic != MAGIC:
                raise DataError(f"{self.path}: bad magic 0x{magic:08X} at offset {offset} (expected 0x{MAGIC:08X})")
            flag, length = word >> 29, word & LENGTH_MASK
            payload = self._stream.read(_padded(length))
            if len(payload) < length:
                raise DataError(f"{self.path}: record at offset {offset} is truncated ({len(payload)} of {length} bytes)")
            if parts and flag not in (2, 3) or not parts and flag not in (0, 1):
                raise DataError(f"{self.path}: continuation flag {flag} out of order at offset {offset}")
            parts.append(payload[:length])
            if flag in (0, 3):
                return MAGIC_BYTES.join(parts)


@dataclass(frozen=True)
class ImageHeader:
    flag: int
    label: float | np.ndarray
    id: int
    id2: int


def unpack_image_record(record: bytes) -> tuple[ImageHeader, bytes]:
    """Splits a packed image record into its header (labels decoded) and the encoded image."""
    if len(record) < HEADER_SIZE:
        raise DataError(f"image record of {len(record)} bytes is shorter than its {HEADER_SIZE}-byte header")
    flag, label, first_id, second_id = struct.unpack(HEADER_FORMAT, record[:HEADER_SIZE])
    body = record[HEADER_SIZE:]
    if flag > 0:
        if len(body) < 4 * flag:
            raise DataError(f"image record promises {flag} float labels but holds {len(body)} bytes")
        label = np.frombuffer(body[: 4 * flag], dtype="<f4").copy()
        body = body[4 * flag:]
    return ImageHeader(flag, label, first_id, second_id), body


def read_property(folder: str | Path) -> tuple[int, int, int]:
    """insightface's ``property`` file: (classes, height, width)."""
    path = Path(folder) / "property"
    try:
        classes, height, width = (int(part) for part in path.read_text().strip().split(","))
    except (OSError, ValueError) as error:
        raise DataError(f"cannot read {path} as 'classes,height,width': {error}") from error
    return classes, height, width


class FaceRecordDataset:
    """The images and identity labels of an insightface ``train.rec`` (decoded on access)."""

    def __init__(self, rec_path: str | Path, idx_path: str | Path | None = None) -> None:
        self.records = RecordFile(rec_path, idx_path)
        header, _ = unpack_image_record(self.records.read(0))
        if header.flag > 0:  # insightface layout: record 0 names the image range
            self.keys = range(1, self._claimed_end(header))
        else:
            self.keys = sorted(self.records.offsets)

    def _claimed_end(self, header: "ImageHeader") -> int:
        """Record 0's claim of how many images follow, bounded by what the index lists: a header
        is never trusted to size an allocation."""
        first = header.label[0] if isinstance(header.label, np.ndarray) else header.label
        listed = len(self.records.offsets)
        if not np.isfinite(first) or first < 1 or first != int(first) or int(first) > listed:
            raise DataError(f"{self.records.path}: record 0 claims images 1..{first}, but the index lists "
                            f"{listed} records")
        return int(first)

    def __len__(self) -> int:
        return len(self.keys)

    def raw(self, index: int) -> tuple[bytes, int]:
        header, image = unpack_image_record(self.records.read(self.keys[index]))
        label = header.label[0] if isinstance(header.label, np.ndarray) else header.label
        if not np.isfinite(label) or label < 0 or label != int(label):
            raise DataError(f"{self.records.path}: record {self.keys[index]} has the label {label}; labels are "
                            "whole numbers >= 0")
        return image, int(label)
