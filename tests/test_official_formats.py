"""Readers of the official CIFAR-10/100 pickles and SVHN .mat files, their writers, downloads
(file:// URLs and a refused local port only: no test touches the network) and corrupt files."""

from __future__ import annotations

import hashlib
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from sdnn.data import cifar, svhn
from sdnn.data.cifar import load_cifar, write_cifar_batches
from sdnn.data.download import download_and_verify, extract_tar, md5sum
from sdnn.data.svhn import load_svhn, write_svhn_mat
from sdnn.errors import DataError
from tests.conftest import compose_config

REFUSED_URL = "http://127.0.0.1:9/x.tar.gz"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """A proxy from the environment must not intercept the refused local port."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


def _cifar_data(classes: int = 10, n_train: int = 20, n_test: int = 10) -> dict:
    rng = np.random.default_rng(classes)
    x_train = _images(n_train, 1)
    x_train[0] = 0
    x_train[0, 0, :4, :4] = 255            # a bright square in the red plane, top left
    return {"x_train": x_train, "y_train": rng.integers(0, classes, n_train),
            "x_test": _images(n_test, 2), "y_test": rng.integers(0, classes, n_test)}


def _write_cifar(root: Path, variant: str = "cifar10", **kwargs) -> tuple[dict, Path]:
    data = _cifar_data(10 if variant == "cifar10" else 100)
    return data, write_cifar_batches(root, variant, **data, **kwargs)


def _file_url(path: Path) -> str:
    return path.resolve().as_uri()


# CIFAR


def test_cifar10_round_trip_pixel_for_pixel(tmp_path):
    data, _ = _write_cifar(tmp_path)
    loaded = load_cifar(tmp_path, "cifar10")
    for key in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(loaded[key], data[key])
    assert loaded["x_train"].dtype == np.uint8 and loaded["x_train"].shape == (20, 3, 32, 32)
    assert loaded["x_train"].flags.c_contiguous and loaded["x_test"].flags.c_contiguous
    assert loaded["y_train"].dtype == np.int64 and loaded["y_test"].dtype == np.int64
    assert loaded["class_names"][:2] == ["airplane", "automobile"] and len(loaded["class_names"]) == 10


def test_cifar_rows_are_red_green_blue_planes_row_major(tmp_path):
    """An official row is R plane (1024 bytes, row-major), then G, then B."""
    folder = write_cifar_batches(tmp_path, "cifar10", **_cifar_data())
    with open(folder / "data_batch_1", "rb") as f:
        row = pickle.load(f, encoding="latin1")["data"][0]
    assert row.shape == (3072,)
    red = row[:1024].reshape(32, 32)
    assert (red[:4, :4] == 255).all() and red.sum() == 16 * 255 and row[1024:].sum() == 0
    x = load_cifar(tmp_path, "cifar10")["x_train"]
    assert x[0, 0, 0, 0] == 255 and x[0, 0, 3, 3] == 255 and x[0, 0, 4, 4] == 0 and x[0, 1:].sum() == 0


def test_cifar_batches_load_like_the_official_python2_pickles(tmp_path):
    """latin1 gives str keys (as the official files); bytes keys are accepted as well."""
    folder = write_cifar_batches(tmp_path, "cifar10", **_cifar_data())
    with open(folder / "data_batch_1", "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    assert set(batch) == {"batch_label", "labels", "data", "filenames"}
    batch = {key.encode(): value for key, value in batch.items()}
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump(batch, f, protocol=2)
    assert len(load_cifar(tmp_path, "cifar10")["x_train"]) == 20


def _python2_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """Protocol-2 opcodes as Python 2 wrote the official batches: str (not bytes) for keys and
    pixel data, and numpy's pre-2.0 module path ``numpy.core.multiarray``."""
    def py2_str(text: bytes) -> bytes:
        return b"U" + bytes([len(text)]) + text if len(text) < 256 else b"T" + struct.pack("<i", len(text)) + text

    n, width = data.shape
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + py2_str(b"b") + b"\x87R("
             + b"K\x01J" + struct.pack("<i", n) + b"J" + struct.pack("<i", width) + b"\x86"
             + b"cnumpy\ndtype\n" + py2_str(b"u1") + b"K\x00K\x01\x87R(K\x03" + py2_str(b"|")
             + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89" + py2_str(data.tobytes()) + b"tb")
    label_list = b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"e"
    return b"\x80\x02}(" + py2_str(b"data") + array + py2_str(b"labels") + label_list + b"u."


def test_cifar_reads_a_python2_pickle(tmp_path):
    data, folder = _write_cifar(tmp_path)
    rows = data["x_test"].reshape(10, 3072)
    (folder / "test_batch").write_bytes(_python2_pickle(rows, [int(v) for v in data["y_test"]]))
    loaded = load_cifar(tmp_path, "cifar10")
    np.testing.assert_array_equal(loaded["x_test"], data["x_test"])
    np.testing.assert_array_equal(loaded["y_test"], data["y_test"])


def test_cifar100_fine_labels(tmp_path):
    data, folder = _write_cifar(tmp_path, "cifar100")
    assert folder.name == "cifar-100-python"
    assert sorted(p.name for p in folder.iterdir()) == ["meta", "test", "train"]
    loaded = load_cifar(tmp_path, "cifar100")
    np.testing.assert_array_equal(loaded["y_train"], data["y_train"])
    np.testing.assert_array_equal(loaded["x_test"], data["x_test"])
    assert len(loaded["class_names"]) == 100 and loaded["class_names"][0] == "apple"


def test_cifar_root_may_be_the_batches_folder(tmp_path):
    data, folder = _write_cifar(tmp_path)
    np.testing.assert_array_equal(load_cifar(folder, "cifar10")["x_train"], data["x_train"])
    np.testing.assert_array_equal(load_cifar(str(tmp_path), "cifar10")["y_test"], data["y_test"])


def test_cifar_missing_files_say_what_to_put_where(tmp_path):
    with pytest.raises(DataError) as err:
        load_cifar(tmp_path, "cifar10")
    message = str(err.value)
    assert "data_batch_1" in message and "test_batch" in message and "batches.meta" in message
    assert str(tmp_path / "cifar-10-batches-py") in message
    assert "dataset.download=true" in message and cifar.CIFAR10_URL in message

    _write_cifar(tmp_path, batches=3)
    with pytest.raises(DataError, match="data_batch_4, data_batch_5") as err:
        load_cifar(tmp_path, "cifar10")
    assert "data_batch_1" not in str(err.value)


def test_cifar_download_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar, "CIFAR10_URL", REFUSED_URL)
    with pytest.raises(DataError) as err:
        load_cifar(tmp_path, "cifar10", download=True)
    message = str(err.value)
    assert REFUSED_URL in message and "offline" in message and str(tmp_path / "x.tar.gz") in message
    assert not list(tmp_path.rglob("*.part")) and not list(tmp_path.iterdir())
    with pytest.raises(DataError):  # a root that did not exist: no empty folder left behind
        load_cifar(tmp_path / "new" / "root", "cifar10", download=True)
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(DataError):  # a folder that was there stays
        load_cifar(tmp_path / "kept", "cifar10", download=True)
    assert (tmp_path / "kept").is_dir()


@pytest.mark.parametrize("variant", ["cifar10", "cifar100"])
def test_dataset_cifar_downloads_when_missing_and_offline_says_where_to_put_the_files(tmp_path, monkeypatch,
                                                                                      variant):
    """`python run.py dataset=cifar10` (the configuration as composed, built as the CLI builds it) fetches the
    official archive when its files are missing; offline (urlopen fails as without a network) the run stops with
    one line naming the URL, where to put the archive (with its published md5) or its unpacked files."""
    import urllib.error
    import urllib.request

    from sdnn.build import build_job

    asked = []

    def offline(url, timeout=None):
        asked.append(url)
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    spec = cifar._spec(variant)
    cfg = compose_config([f"dataset={variant}", f"dataset.root={tmp_path}", f"phase1.cache_dir={tmp_path / 'c'}"])
    with pytest.raises(DataError) as err:
        build_job(cfg, tmp_path / "run")
    message = str(err.value)
    assert asked == [spec.url] and spec.url.startswith("https://www.cs.toronto.edu/~kriz/")
    assert "\n" not in message and "offline?" in message and "Temporary failure in name resolution" in message
    assert f"put it at {tmp_path / spec.archive} (md5 {spec.md5})" in message
    assert f"put the files of {spec.folder}/ in {tmp_path / spec.folder}" in message
    assert not list(tmp_path.rglob("*.part"))


def _cifar_archive(tmp_path: Path) -> tuple[dict, Path]:
    """A cifar-10-python.tar.gz built like the official one (folder cifar-10-batches-py/)."""
    data, folder = _write_cifar(tmp_path / "src")
    archive = tmp_path / "server" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    return data, archive


def test_cifar_download_extracts_and_reads(tmp_path, monkeypatch):
    data, archive = _cifar_archive(tmp_path)
    monkeypatch.setattr(cifar, "CIFAR10_URL", _file_url(archive))
    monkeypatch.setattr(cifar, "CIFAR10_MD5", md5sum(archive))
    root = tmp_path / "data"
    loaded = load_cifar(root, "cifar10", download=True)
    np.testing.assert_array_equal(loaded["x_train"], data["x_train"])
    np.testing.assert_array_equal(loaded["y_test"], data["y_test"])
    assert (root / "cifar-10-python.tar.gz").is_file() and (root / "cifar-10-batches-py" / "test_batch").is_file()
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]

    (root / "cifar-10-batches-py" / "data_batch_2").unlink()  # a partial copy: refilled from the archive
    archive.unlink()                                          # and no network needed for that
    np.testing.assert_array_equal(load_cifar(root, "cifar10", download=True)["x_train"], data["x_train"])


def _corrupt_cifar_cases():
    def truncate(path: Path) -> None:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    def wrong_object(path: Path) -> None:
        path.write_bytes(pickle.dumps([1, 2, 3], protocol=2))

    def wrong_keys(path: Path) -> None:
        path.write_bytes(pickle.dumps({"pixels": np.zeros(3072, np.uint8)}, protocol=2))

    def edit(change):
        def apply(path: Path) -> None:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="latin1")
            change(batch)
            path.write_bytes(pickle.dumps(batch, protocol=2))
        return apply

    def fewer_pixels(batch):
        batch["data"] = batch["data"][:, :3000].copy()

    def label_out_of_range(batch):
        batch["labels"][0] = 10

    def negative_label(batch):
        batch["labels"][-1] = -1

    def extra_label(batch):
        batch["labels"].append(0)

    def float_pixels(batch):
        batch["data"] = batch["data"].astype(np.float32)

    def code_in_pickle(path: Path) -> None:
        path.write_bytes(b"cos\nsystem\n(S'echo hacked'\ntR.")

    return {
        "truncated": (truncate, "not a readable pickle"),
        "wrong object": (wrong_object, "holds a list"),
        "wrong keys": (wrong_keys, "lack"),
        "wrong data size": (edit(fewer_pixels), "bytes for"),
        "label 10": (edit(label_out_of_range), "expected 0..9"),
        "label -1": (edit(negative_label), "expected 0..9"),
        "labels length": (edit(extra_label), "bytes for"),
        "float pixels": (edit(float_pixels), "uint8"),
        "code in pickle": (code_in_pickle, "unexpected object"),
        "garbage": (lambda path: path.write_bytes(b"\x00garbage" * 50), "not a readable pickle"),
    }


@pytest.mark.parametrize("case", list(_corrupt_cifar_cases()))
def test_corrupt_cifar_batch_names_the_file(tmp_path, case):
    damage, problem = _corrupt_cifar_cases()[case]
    _, folder = _write_cifar(tmp_path)
    damage(folder / "data_batch_3")
    with pytest.raises(DataError) as err:
        load_cifar(tmp_path, "cifar10")
    message = str(err.value)
    assert str(folder / "data_batch_3") in message and problem in message
    assert "corrupt or truncated" in message and "dataset.download=true" in message


def test_corrupt_cifar100_labels_and_meta(tmp_path):
    _, folder = _write_cifar(tmp_path, "cifar100")
    with open(folder / "test", "rb") as f:
        batch = pickle.load(f, encoding="latin1")
    batch["fine_labels"][0] = 100
    (folder / "test").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match=r"test is corrupt.*expected 0\.\.99"):
        load_cifar(tmp_path, "cifar100")
    _write_cifar(tmp_path, "cifar100")
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": ["a", "b"]}, protocol=2))
    with pytest.raises(DataError, match="meta is corrupt"):
        load_cifar(tmp_path, "cifar100")


def test_unknown_cifar_variant(tmp_path):
    with pytest.raises(DataError, match="cifar10, cifar100"):
        load_cifar(tmp_path, "cifar1000")


# SVHN


def _write_svhn(root: Path, sizes=(("train", 12), ("extra", 8), ("test", 6))) -> dict:
    written = {}
    for i, (part, n) in enumerate(sizes):
        x, y = _images(n, 10 + i), np.arange(n) % 10
        write_svhn_mat(root / svhn.SVHN_FILES[part][0], x, y)
        written[part] = (x, y)
    return written


def test_svhn_writer_matches_the_official_layout(tmp_path):
    x = np.zeros((3, 3, 32, 32), np.uint8)
    x[1, 0, 0, 0] = 200                     # red, top-left pixel of image 1
    x[2, 2, 31, 0] = 100                    # blue, bottom-left pixel of image 2
    path = write_svhn_mat(tmp_path / "test_32x32.mat", x, np.array([0, 7, 9]))
    mat = scipy.io.loadmat(path)
    assert mat["X"].shape == (32, 32, 3, 3) and mat["X"].dtype == np.uint8
    assert mat["X"][0, 0, 0, 1] == 200 and mat["X"][31, 0, 2, 2] == 100 and mat["X"].sum() == 300
    assert mat["y"].shape == (3, 1) and mat["y"][:, 0].tolist() == [10, 7, 9]


def test_svhn_round_trip_train_plus_extra(tmp_path):
    written = _write_svhn(tmp_path)
    loaded = load_svhn(tmp_path)
    np.testing.assert_array_equal(loaded["x_train"], np.concatenate([written["train"][0], written["extra"][0]]))
    np.testing.assert_array_equal(loaded["y_train"], np.concatenate([written["train"][1], written["extra"][1]]))
    np.testing.assert_array_equal(loaded["x_test"], written["test"][0])
    np.testing.assert_array_equal(loaded["y_test"], written["test"][1])
    assert loaded["x_train"].dtype == np.uint8 and loaded["x_train"].flags.c_contiguous
    assert loaded["y_train"].dtype == np.int64 and loaded["y_train"].min() == 0 and loaded["y_train"].max() == 9
    assert loaded["class_names"] == [str(d) for d in range(10)]


def test_svhn_use_extra_false_needs_no_extra_file(tmp_path):
    written = _write_svhn(tmp_path, (("train", 12), ("test", 6)))
    loaded = load_svhn(tmp_path, use_extra=False)
    np.testing.assert_array_equal(loaded["x_train"], written["train"][0])
    with pytest.raises(DataError) as err:
        load_svhn(tmp_path)
    message = str(err.value)
    assert message.startswith(f"svhn: missing extra_32x32.mat in {tmp_path}.")
    assert "dataset.use_extra=false" in message and "dataset.download=true" in message
    assert svhn.SVHN_URL + "extra_32x32.mat" in message and str(tmp_path) in message


def test_svhn_download_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(svhn, "SVHN_URL", "http://127.0.0.1:9/")
    with pytest.raises(DataError) as err:
        load_svhn(tmp_path, download=True)
    message = str(err.value)
    assert "http://127.0.0.1:9/train_32x32.mat" in message and str(tmp_path / "train_32x32.mat") in message
    assert not list(tmp_path.iterdir())


def test_svhn_download_fetches_only_missing_files(tmp_path, monkeypatch):
    server = tmp_path / "server"
    written = _write_svhn(server)
    root = tmp_path / "data"
    write_svhn_mat(root / "train_32x32.mat", *written["train"])
    files = {part: (name, md5sum(server / name)) for part, (name, _) in svhn.SVHN_FILES.items()}
    files["train"] = ("train_32x32.mat", "0" * 32)    # would fail the check if it were fetched
    monkeypatch.setattr(svhn, "SVHN_URL", _file_url(server) + "/")
    monkeypatch.setattr(svhn, "SVHN_FILES", files)
    loaded = load_svhn(root, download=True)
    np.testing.assert_array_equal(loaded["x_test"], written["test"][0])
    assert len(loaded["x_train"]) == 20 and not list(root.glob("*.part"))


def _corrupt_svhn_cases():
    def save(**variables):
        return lambda path: scipy.io.savemat(path, variables)

    x = np.zeros((32, 32, 3, 4), np.uint8)
    return {
        "garbage": (lambda path: path.write_bytes(b"\x13\x37garbage" * 100), "not a readable MATLAB"),
        "truncated": (lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]),
                      "not a readable MATLAB"),
        "no y": (save(X=x), "lacks"),
        "wrong X shape": (save(X=np.zeros((4, 3, 32, 32), np.uint8), y=np.ones((4, 1))), "expected uint8 (32, 32, 3, N)"),
        "float X": (save(X=x.astype(np.float64), y=np.ones((4, 1))), "expected uint8"),
        "y length": (save(X=x, y=np.ones((5, 1), np.uint8)), "for 4 images"),
        "label 0": (save(X=x, y=np.zeros((4, 1), np.uint8)), "expected integers 1..10"),
        "label 11": (save(X=x, y=np.full((4, 1), 11, np.uint8)), "expected integers 1..10"),
    }


@pytest.mark.parametrize("case", list(_corrupt_svhn_cases()))
def test_corrupt_svhn_file_names_the_file(tmp_path, case):
    damage, problem = _corrupt_svhn_cases()[case]
    _write_svhn(tmp_path)
    damage(tmp_path / "extra_32x32.mat")
    with pytest.raises(DataError) as err:
        load_svhn(tmp_path)
    message = str(err.value)
    assert str(tmp_path / "extra_32x32.mat") in message and problem in message
    assert "corrupt or truncated" in message


# download helpers


def test_download_and_verify_end_to_end(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(np.random.default_rng(0).bytes(300_000))
    dest = tmp_path / "out" / "copy.bin"
    expected = hashlib.md5(source.read_bytes()).hexdigest()
    assert md5sum(source) == expected
    assert download_and_verify(_file_url(source), dest, expected, progress=False) == dest
    assert dest.read_bytes() == source.read_bytes() and not dest.with_suffix(".bin.part").exists()
    source.unlink()                         # an already verified file is kept without fetching
    assert download_and_verify(_file_url(source), dest, expected) == dest


def test_download_md5_mismatch(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"not the file you want")
    dest = tmp_path / "copy.bin"
    with pytest.raises(DataError) as err:
        download_and_verify(_file_url(source), dest, "0" * 32, progress=False)
    message = str(err.value)
    assert "copy.bin" in message and "0" * 32 in message and md5sum(source) in message
    assert not dest.exists() and not (tmp_path / "copy.bin.part").exists()


def test_download_refused_port(tmp_path):
    dest = tmp_path / "x.tar.gz"
    with pytest.raises(DataError) as err:
        download_and_verify(REFUSED_URL, dest, "0" * 32, progress=False)
    assert REFUSED_URL in str(err.value) and str(dest) in str(err.value)
    assert not list(tmp_path.iterdir())


def test_extract_tar_truncated_and_garbage(tmp_path):
    _, archive = _cifar_archive(tmp_path)
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated.tar.gz.*corrupt or truncated"):
        extract_tar(truncated, tmp_path / "out")
    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"garbage" * 100)
    with pytest.raises(DataError, match="garbage.tar.gz.*corrupt or truncated"):
        extract_tar(garbage, tmp_path / "out2")
    extract_tar(archive, tmp_path / "good")
    assert (tmp_path / "good" / "cifar-10-batches-py" / "data_batch_5").is_file()


def test_extract_tar_refuses_paths_outside_the_folder(tmp_path):
    evil = tmp_path / "evil.tar"
    payload = tmp_path / "payload.txt"
    payload.write_text("x")
    with tarfile.open(evil, "w") as tar:
        tar.add(payload, arcname="../escaped.txt")
    with pytest.raises(DataError, match="evil.tar"):
        extract_tar(evil, tmp_path / "inside")
    assert not (tmp_path / "escaped.txt").exists()


def test_cifar_download_with_bad_archive_md5(tmp_path, monkeypatch):
    _, archive = _cifar_archive(tmp_path)
    monkeypatch.setattr(cifar, "CIFAR10_URL", _file_url(archive))
    root = tmp_path / "data"
    with pytest.raises(DataError, match="cifar-10-python.tar.gz.*expected c58f30108f718f92721af3b95e74349a"):
        load_cifar(root, "cifar10", download=True)
    assert not root.exists()  # neither the partial file nor the folder the download made
