"""TFRecord framing and tf.train.Example records without TensorFlow: round trips, a cross-check
against protobuf's own codec, and damaged shards (issue 6, item 3: detection with file and byte
offset, and on_corrupt=skip with a count)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from sdnn.data.tfrecord import CorruptionLog, decode_example, encode_example, masked_crc32c, read_records, \
    write_records
from sdnn.errors import DataError


def _video(i: int, rng: np.random.Generator) -> dict:
    labels = np.sort(rng.choice(3862, size=1 + i % 4, replace=False)).astype(np.int64)
    return {"id": f"v{i:04d}".encode(), "labels": labels,
            "mean_rgb": rng.standard_normal(1024).astype(np.float32),
            "mean_audio": rng.standard_normal(128).astype(np.float32)}


def _shard(path: Path, n: int = 6) -> list[dict]:
    rng = np.random.default_rng(0)
    videos = [_video(i, rng) for i in range(n)]
    write_records(path, (encode_example(v) for v in videos))
    return videos


def _offsets(path: Path) -> list[int]:
    """Byte offset of each record, walking the framing by hand."""
    data, offsets, pos = path.read_bytes(), [], 0
    while pos < len(data):
        offsets.append(pos)
        pos += 12 + struct.unpack("<Q", data[pos:pos + 8])[0] + 4
    return offsets


def test_crc32c_and_its_mask_match_the_tfrecord_definition():
    import google_crc32c

    assert google_crc32c.value(b"123456789") == 0xE3069283  # the CRC-32C check value
    crc = google_crc32c.value(b"hello")
    assert masked_crc32c(b"hello") == ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) % 2**32


def test_records_round_trip_field_for_field(tmp_path):
    path = tmp_path / "train0000.tfrecord"
    videos = _shard(path)
    records = list(read_records(path))
    assert [offset for offset, _ in records] == _offsets(path)
    for video, (_, data) in zip(videos, records, strict=True):
        decoded = decode_example(data)
        assert decoded["id"] == [video["id"]]
        assert decoded["labels"].dtype == np.int64 and np.array_equal(decoded["labels"], video["labels"])
        for key in ("mean_rgb", "mean_audio"):
            assert decoded[key].dtype == np.float32 and np.array_equal(decoded[key], video[key])
    header = path.read_bytes()[:12]
    assert masked_crc32c(header[:8]) == struct.unpack("<I", header[8:])[0]


def _example_classes():
    """tf.train.Example's messages (tensorflow/core/example/{feature,example}.proto), built with protobuf."""
    pytest.importorskip("google.protobuf")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    proto = descriptor_pb2.FileDescriptorProto(name="sdnn_test_example.proto", package="sdnntest", syntax="proto3")
    field = descriptor_pb2.FieldDescriptorProto
    for name, kind in (("BytesList", field.TYPE_BYTES), ("FloatList", field.TYPE_FLOAT),
                       ("Int64List", field.TYPE_INT64)):
        message = proto.message_type.add(name=name)
        value = message.field.add(name="value", number=1, label=field.LABEL_REPEATED, type=kind)
        if kind != field.TYPE_BYTES:
            value.options.packed = True
    feature = proto.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, (name, type_name) in enumerate((("bytes_list", "BytesList"), ("float_list", "FloatList"),
                                                ("int64_list", "Int64List")), start=1):
        feature.field.add(name=name, number=number, label=field.LABEL_OPTIONAL, type=field.TYPE_MESSAGE,
                          type_name=f".sdnntest.{type_name}", oneof_index=0)
    features = proto.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, label=field.LABEL_OPTIONAL, type=field.TYPE_STRING)
    entry.field.add(name="value", number=2, label=field.LABEL_OPTIONAL, type=field.TYPE_MESSAGE,
                    type_name=".sdnntest.Feature")
    features.field.add(name="feature", number=1, label=field.LABEL_REPEATED, type=field.TYPE_MESSAGE,
                       type_name=".sdnntest.Features.FeatureEntry")
    example = proto.message_type.add(name="Example")
    example.field.add(name="features", number=1, label=field.LABEL_OPTIONAL, type=field.TYPE_MESSAGE,
                      type_name=".sdnntest.Features")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("sdnntest.Example"))


def test_the_codec_agrees_with_protobuf_both_ways():
    Example = _example_classes()
    video = _video(3, np.random.default_rng(1))
    video["labels"] = np.array([0, 5, 3861, 2**40, -7], dtype=np.int64)  # multi-byte and negative varints
    theirs = Example()
    theirs.features.feature["id"].bytes_list.value.append(video["id"])
    theirs.features.feature["labels"].int64_list.value.extend(video["labels"].tolist())
    for key in ("mean_rgb", "mean_audio"):
        theirs.features.feature[key].float_list.value.extend(video[key].tolist())
    decoded = decode_example(theirs.SerializeToString())
    assert decoded["id"] == [video["id"]] and np.array_equal(decoded["labels"], video["labels"])
    assert np.array_equal(decoded["mean_rgb"], video["mean_rgb"])
    parsed = Example.FromString(encode_example(video))
    assert list(parsed.features.feature["labels"].int64_list.value) == video["labels"].tolist()
    assert np.array_equal(np.array(parsed.features.feature["mean_audio"].float_list.value, np.float32),
                          video["mean_audio"])
    assert list(parsed.features.feature["id"].bytes_list.value) == [video["id"]]


def test_unpacked_lists_decode_too():
    """Some writers emit one fixed32 / varint per value instead of a packed run."""
    floats = b"".join(b"\x0d" + struct.pack("<f", v) for v in (1.5, -2.0))       # field 1, fixed32
    ints = b"".join(b"\x08" + bytes([v]) for v in (3, 9))                          # field 1, varint
    def entry(key: bytes, kind: int, payload: bytes) -> bytes:
        feature = bytes([kind << 3 | 2, len(payload)]) + payload
        body = b"\x0a" + bytes([len(key)]) + key + b"\x12" + bytes([len(feature)]) + feature
        return b"\x0a" + bytes([len(body)]) + body
    features = entry(b"f", 2, floats) + entry(b"i", 3, ints)
    decoded = decode_example(b"\x0a" + bytes([len(features)]) + features)
    assert decoded["f"].tolist() == [1.5, -2.0] and decoded["i"].tolist() == [3, 9]


def _flip(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0x5A
    path.write_bytes(bytes(data))


def test_a_flipped_data_byte_is_named_by_offset_and_skipped_alone(tmp_path):
    path = tmp_path / "train0001.tfrecord"
    videos = _shard(path)
    offsets = _offsets(path)
    _flip(path, offsets[2] + 12 + 100)  # inside record 2's data
    with pytest.raises(DataError) as err:
        list(read_records(path))
    message = str(err.value)
    assert str(path) in message and f"byte offset {offsets[2]}" in message and "data checksum" in message
    assert "dataset.on_corrupt=skip" in message
    log = CorruptionLog()
    kept = [decode_example(data)["id"][0] for _, data in read_records(path, on_corrupt="skip", log=log)]
    assert kept == [v["id"] for i, v in enumerate(videos) if i != 2]
    assert len(log) == 1 and log.entries[0][1] == offsets[2] and "record skipped" in log.describe()[0]


@pytest.mark.parametrize("damage, problem, kept", [
    ("length header", "length checksum mismatch", 3),
    ("truncated inside a record", "truncated: the file ends inside a record", 4),
    ("truncated inside a header", "truncated: 5 of 12 header bytes", 6),
])
def test_lost_framing_stops_the_file_there(tmp_path, damage, problem, kept):
    path = tmp_path / "validate0000.tfrecord"
    _shard(path)
    offsets = _offsets(path)
    data = path.read_bytes()
    if damage == "length header":
        _flip(path, offsets[3] + 1)
        where = offsets[3]
    elif damage == "truncated inside a record":
        path.write_bytes(data[:offsets[4] + 40])
        where = offsets[4]
    else:
        path.write_bytes(data + data[:5])
        where = len(data)
    with pytest.raises(DataError, match=f"byte offset {where} is damaged \\({problem}"):
        list(read_records(path))
    log = CorruptionLog()
    assert len(list(read_records(path, on_corrupt="skip", log=log))) == kept
    assert len(log) == 1 and log.entries[0][1] == where and "rest of the file was skipped" in log.entries[0][2]


def test_foreign_and_missing_files(tmp_path):
    foreign = tmp_path / "notes.tfrecord"
    foreign.write_text("this is not a TFRecord file, but it is long enough to hold a header\n")
    with pytest.raises(DataError, match="notes.tfrecord: the record at byte offset 0 is damaged \\(length checksum"):
        list(read_records(foreign))
    with pytest.raises(DataError, match="cannot read .*missing.tfrecord"):
        list(read_records(tmp_path / "missing.tfrecord"))
    with pytest.raises(DataError, match="on_corrupt='ignore'"):
        list(read_records(foreign, on_corrupt="ignore"))
    empty = tmp_path / "empty.tfrecord"
    assert write_records(empty, []) == 0 and list(read_records(empty)) == []


def test_reading_from_a_later_record_passes_over_the_earlier_ones_by_their_headers(tmp_path):
    from sdnn.data.tfrecord import count_records

    path = tmp_path / "train0002.tfrecord"
    videos = _shard(path, n=6)
    offsets = _offsets(path)
    _flip(path, offsets[1] + 12 + 100)  # damage a record's data before the start: not read, so not seen
    later = list(read_records(path, start=3))
    assert [offset for offset, _ in later] == offsets[3:]
    assert [decode_example(data)["id"][0] for _, data in later] == [v["id"] for v in videos[3:]]
    assert list(read_records(path, start=6)) == [] and count_records(path) == 6
    _flip(path, offsets[2] + 1)  # a damaged header before the start still ends the file there
    with pytest.raises(DataError, match=f"byte offset {offsets[2]} is damaged \\(length checksum"):
        list(read_records(path, start=4))
    assert count_records(path) == 2
