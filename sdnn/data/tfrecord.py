"""TFRecord files and ``tf.train.Example`` records, without TensorFlow.

A TFRecord file is a sequence of records, each framed as::

    uint64 length | uint32 masked_crc32c(length bytes) | data[length] | uint32 masked_crc32c(data)

(little-endian; ``masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8`` mod 2³²). Both checksums are
verified (CRC32C from ``google-crc32c``), so a truncated file, a flipped bit or a foreign file is
reported with the file and the byte offset of the record. With ``on_corrupt="skip"`` a record
whose data fails its checksum is skipped (its framing is intact) and a damaged header or a
truncated tail ends the file there; every skip is logged in a ``CorruptionLog``.

``tf.train.Example`` is decoded and encoded with a small protobuf wire-format codec for its three
feature kinds (``bytes_list``, ``float_list``, ``int64_list``; packed or not), float lists as
float32 numpy arrays straight from the packed bytes.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import google_crc32c
import numpy as np

from sdnn.errors import DataError

_MASK_DELTA = 0xA282EAD8
_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")


def masked_crc32c(data: bytes) -> int:
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


@dataclass
class CorruptionLog:
    """What ``on_corrupt="skip"`` left out: one ``(path, offset, problem)`` per damaged spot."""

    entries: list[tuple[str, int, str]] = field(default_factory=list)
    journal: str | None = None  # also append each entry to this file (JSON lines), for other processes

    def add(self, path: Path, offset: int, problem: str) -> None:
        entry = (str(path), int(offset), problem)
        self.entries.append(entry)
        if self.journal is not None:  # DataLoader workers and DDP ranks report to the main process this way
            line = (json.dumps(entry) + "\n").encode()
            fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)  # one short O_APPEND write: lines of concurrent writers do not interleave
            finally:
                os.close(fd)

    @classmethod
    def from_journal(cls, journal: str | Path) -> CorruptionLog:
        """The distinct entries written to ``journal`` (a record skipped in every epoch counts once)."""
        path = Path(journal)
        entries = {}
        for line in path.read_text().splitlines() if path.is_file() else []:
            try:
                entries[tuple(json.loads(line))] = None
            except ValueError:
                continue  # a line cut by a kill
        return cls(entries=list(entries))

    def __len__(self) -> int:
        return len(self.entries)

    def describe(self) -> list[str]:
        return [f"{path} at byte {offset}: {problem}" for path, offset, problem in self.entries]


def _damaged(path: Path, offset: int, problem: str) -> DataError:
    return DataError(f"{path}: the record at byte offset {offset} is damaged ({problem}). Download the shard "
                     "again, or set dataset.on_corrupt=skip to skip damaged records and count them")


def _next_length(handle, size: int) -> tuple[int | None, str | None]:
    """Reads one record header: ``(data length, None)``; ``(None, None)`` at the end of the file;
    ``(None, problem)`` when the framing is lost (a short or damaged header, or a record that
    runs past the end of the file)."""
    start = handle.tell()
    header = handle.read(_HEADER.size)
    if not header:
        return None, None
    if len(header) < _HEADER.size:
        return None, f"truncated: {len(header)} of {_HEADER.size} header bytes"
    length, length_crc = _HEADER.unpack(header)
    if masked_crc32c(header[:8]) != length_crc:
        return None, "length checksum mismatch (not a TFRecord file, or a damaged header)"
    if start + _HEADER.size + length + _FOOTER.size > size:
        return None, f"truncated: the file ends inside a record of {length} bytes"
    return length, None


def read_records(path: str | Path, on_corrupt: str = "error", log: CorruptionLog | None = None,
                 yield_skipped: bool = False, start: int = 0) -> Iterator[tuple[int, bytes | None]]:
    """Yields ``(byte offset, data)`` of the records of one TFRecord file from record ``start`` on
    (the records before it are passed over by their headers alone), checksums verified. With
    ``yield_skipped``, a record skipped for its data checksum yields ``(offset, None)``, so that
    callers can count positions."""
    if on_corrupt not in ("error", "skip"):
        raise DataError(f"dataset.on_corrupt={on_corrupt!r}: choose error or skip")
    path = Path(path)
    log = log if log is not None else CorruptionLog()
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc})") from exc
    with handle:
        size = os.fstat(handle.fileno()).st_size
        index = offset = 0
        while True:
            length, problem = _next_length(handle, size)
            if problem is not None:  # the framing is lost: nothing after this point can be trusted
                if on_corrupt == "error":
                    raise _damaged(path, offset, problem)
                log.add(path, offset, problem + "; the rest of the file was skipped")
                return
            if length is None:
                return
            if index < start:
                handle.seek(length + _FOOTER.size, os.SEEK_CUR)
            else:
                data = handle.read(length)
                if masked_crc32c(data) != _FOOTER.unpack(handle.read(_FOOTER.size))[0]:
                    if on_corrupt == "error":
                        raise _damaged(path, offset, "data checksum mismatch")
                    log.add(path, offset, "data checksum mismatch; record skipped")
                    if yield_skipped:
                        yield offset, None
                else:
                    yield offset, data
            index += 1
            offset += _HEADER.size + length + _FOOTER.size


def count_records(path: str | Path) -> int:
    """Records in one file, from the framing alone (headers checked, data passed over); a damaged
    tail ends the count, as it ends reading."""
    path = Path(path)
    count = 0
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        while True:
            length, _ = _next_length(handle, size)
            if length is None:
                return count
            handle.seek(length + _FOOTER.size, os.SEEK_CUR)
            count += 1


def write_records(path: str | Path, records: Iterable[bytes]) -> int:
    """Writes a TFRecord file atomically (a temporary file, then a rename); returns the record count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    count = 0
    with open(partial, "wb") as handle:
        for data in records:
            length = struct.pack("<Q", len(data))
            handle.write(length + struct.pack("<I", masked_crc32c(length)))
            handle.write(data)
            handle.write(struct.pack("<I", masked_crc32c(data)))
            count += 1
    os.replace(partial, path)
    return count


# ---------------------------------------------------------------- tf.train.Example codec

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: bytes) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value): an int for varints, a memoryview for LEN and fixed fields."""
    pos, end, view = 0, len(buf), memoryview(buf)
    while pos < end:
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _read_varint(buf, pos)
        elif wire == _LEN:
            size, pos = _read_varint(buf, pos)
            if pos + size > end:
                raise ValueError("length-delimited field runs past the message")
            value, pos = view[pos:pos + size], pos + size
        elif wire == _FIXED32:
            value, pos = view[pos:pos + 4], pos + 4
        elif wire == _FIXED64:
            value, pos = view[pos:pos + 8], pos + 8
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _decode_feature(buf: memoryview):
    for kind, _, payload in _fields(bytes(buf)):
        values = list(_fields(bytes(payload)))
        if kind == 1:  # BytesList
            return [bytes(v) for _, _, v in values]
        if kind == 2:  # FloatList: packed (LEN) or one fixed32 per value
            chunks = [np.frombuffer(v, dtype="<f4") for _, _, v in values]
            return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
        if kind == 3:  # Int64List: packed varints (LEN) or one varint per value
            out: list[int] = []
            for _, wire, v in values:
                if wire == _LEN:
                    raw, pos = bytes(v), 0
                    while pos < len(raw):
                        item, pos = _read_varint(raw, pos)
                        out.append(_signed64(item))
                else:
                    out.append(_signed64(v))
            return np.asarray(out, dtype=np.int64)
    return []


def decode_example(data: bytes) -> dict[str, list[bytes] | np.ndarray]:
    """``tf.train.Example`` bytes → ``{name: list of bytes | float32 array | int64 array}``."""
    features: dict[str, list[bytes] | np.ndarray] = {}
    for number, _, payload in _fields(data):
        if number != 1:
            continue
        for entry_number, _, entry in _fields(bytes(payload)):
            if entry_number != 1:
                continue
            key, value = "", memoryview(b"")
            for part, _, item in _fields(bytes(entry)):
                if part == 1:
                    key = bytes(item).decode("utf-8")
                elif part == 2:
                    value = item
            features[key] = _decode_feature(value)
    return features


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | _LEN) + _varint(len(payload)) + payload


def encode_example(features: Mapping[str, bytes | list | np.ndarray]) -> bytes:
    """The inverse of ``decode_example``: ``bytes``/lists of bytes → bytes_list, float arrays →
    float_list (packed float32), integer arrays or lists of int → int64_list (packed)."""
    entries = b""
    for key, value in features.items():
        if isinstance(value, bytes) or (isinstance(value, list) and value and isinstance(value[0], bytes)):
            items = [value] if isinstance(value, bytes) else value
            feature = _len_field(1, b"".join(_len_field(1, item) for item in items))
        else:
            array = np.asarray(value)
            if array.dtype.kind == "f":
                feature = _len_field(2, _len_field(1, array.astype("<f4").tobytes()))
            elif array.dtype.kind in "iub" or array.size == 0:
                packed = b"".join(_varint(int(v)) for v in array.reshape(-1))
                feature = _len_field(3, _len_field(1, packed))
            else:
                raise TypeError(f"feature {key!r}: cannot encode {array.dtype}")
        entries += _len_field(1, _len_field(1, key.encode("utf-8")) + _len_field(2, feature))
    return _len_field(1, entries)
