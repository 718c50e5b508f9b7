"""Fetching the official dataset files: download with urllib, check the published md5, extract
tar archives safely. Everything a user can fix (offline, corrupt file, bad checksum) raises
``DataError`` naming the file and what to do by hand instead.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import os
import tarfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from sdnn.errors import DataError

TIMEOUT_S = 60
CHUNK_BYTES = 1 << 20


def md5sum(path: str | Path) -> str:
    """Hex md5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _progress_bar(total: int | None, name: str, enabled: bool):
    """A tqdm byte counter, or None when tqdm is missing or progress is off."""
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name, leave=False)


def _fetch(url: str, part: Path, progress: bool) -> None:
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(part, "wb") as out:
        length = response.headers.get("Content-Length")
        bar = _progress_bar(int(length) if length and length.isdigit() else None, part.stem, progress)
        try:
            for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                out.write(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()


def download_and_verify(url: str, dest: Path, md5: str, progress: bool = True,
                        manual: str | None = None) -> Path:
    """Download ``url`` to ``dest`` (via ``dest.part``, renamed only once the md5 matches).

    An existing ``dest`` with the right md5 is kept as is (no network needed). ``manual`` is
    the by-hand alternative quoted when the download fails; by default "put the file at dest".
    """
    dest = Path(dest)
    if dest.is_file() and md5sum(dest) == md5:
        return dest
    by_hand = manual or f"download {url} on a machine with internet and put it at {dest}"
    part = dest.with_suffix(dest.suffix + ".part")
    created = [folder for folder in (dest.parent, *dest.parent.parents) if not folder.exists()]  # deepest first
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create the download folder {dest.parent} ({e}); "
                        f"choose a writable dataset.root, or {by_hand}") from e
    done = False
    try:
        try:
            _fetch(url, part, progress)
        except (OSError, http.client.HTTPException, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            raise DataError(f"download of {url} failed ({reason}); offline? Instead {by_hand}, "
                            f"then run again") from e
        actual = md5sum(part)
        if actual != md5:
            raise DataError(f"downloaded {dest.name} from {url} has md5 {actual}, expected {md5}: "
                            f"the transfer was corrupted or the server's file changed; run again to "
                            f"retry, or {by_hand}")
        os.replace(part, dest)
        done = True
    finally:
        if not done:
            part.unlink(missing_ok=True)
            for folder in created:  # a failed download leaves no empty folder of its own behind
                with contextlib.suppress(OSError):
                    folder.rmdir()
    return dest


def _check_member(member: tarfile.TarInfo, into: Path) -> None:
    """Reject absolute paths, ``..``, links and devices (for Pythons without tar filters)."""
    target = (into / member.name).resolve()
    if not (member.isfile() or member.isdir()) or not target.is_relative_to(into.resolve()):
        raise tarfile.TarError(f"unsafe member {member.name!r}")


def extract_tar(archive: Path, into: Path) -> None:
    """Extract a (compressed) tar archive into ``into`` with the safe ``data`` filter."""
    archive, into = Path(archive), Path(into)
    fix = "it is corrupt or truncated: delete it and download again (dataset.download=true)"
    try:
        into.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive, "r:*") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(into, filter="data")
            else:
                members = tar.getmembers()
                for member in members:
                    _check_member(member, into)
                tar.extractall(into, members=members)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        reason = " ".join(str(e).split())
        raise DataError(f"cannot extract {archive} ({reason}): {fix}") from e
    except OSError as e:
        if not archive.is_file():
            raise DataError(f"archive {archive} not found ({e})") from e
        raise DataError(f"extracting {archive} into {into} failed ({e}): check that the folder is "
                        f"writable and has free space, or the archive may be corrupt ({fix})") from e
