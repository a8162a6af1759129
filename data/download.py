"""Resumable, checksum-verified downloads and safe archive extraction; the only code here that uses the network.

A download goes to ``<dest>.part``; an interrupted one continues from where it stopped with an HTTP range
request (a server that ignores the range is detected and the file restarted). Only a file whose checksum
matched is renamed to ``dest``, so an existing ``dest`` is a verified one. The opener is a parameter, so tests
pass a local fake and nothing here needs a network.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from data.atomic import write_text_atomic

log = logging.getLogger(__name__)

#: ``opener(request, timeout=...)`` returns a response: ``.read(n)``, ``.headers``, ``.status`` or ``.getcode()``.
Opener = Callable[..., BinaryIO]
_CHUNK = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(\d+|\*)")


class DownloadError(RuntimeError):
    """A download failed or its checksum did not match; the message names the URL and the file."""


def parse_checksum(checksum: str) -> tuple[str, str]:
    """``"md5:<hex>"`` or ``"sha256:<hex>"`` -> (algorithm, lower-case hex digest)."""
    algorithm, _, digest = checksum.partition(":")
    if algorithm not in ("md5", "sha256") or not re.fullmatch(r"[0-9a-fA-F]+", digest):
        raise ValueError(f"checksum must be 'md5:<hex>' or 'sha256:<hex>', got {checksum!r}")
    return algorithm, digest.lower()


def file_digest(path: str | Path, algorithm: str, progress: bool = False) -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    path = Path(path)
    with path.open("rb") as source, tqdm(total=path.stat().st_size, unit="B", unit_scale=True,
                                          desc=f"{algorithm} {path.name}", disable=not progress) as bar:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def download(url: str, dest: str | Path, checksum: str, opener: Opener = urllib.request.urlopen,
             progress: bool = True, timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``dest`` unless it is there; resume a partial ``dest.part``; verify ``checksum``.

    Raises :class:`DownloadError` on a network failure (the partial file is kept for the next try) or a
    checksum mismatch (the bad file is deleted).
    """
    dest = Path(dest)
    algorithm, expected = parse_checksum(checksum)
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        _fetch(url, part, opener, progress, timeout)
    except (urllib.error.URLError, OSError) as err:
        raise DownloadError(f"downloading {url} to {part} failed ({err}); run again to resume") from err
    actual = file_digest(part, algorithm, progress)
    if actual != expected:
        part.unlink()
        raise DownloadError(f"{url}: {algorithm} of the downloaded file is {actual}, expected {expected}; "
                            f"deleted {part}, run again to download it afresh")
    os.replace(part, dest)
    return dest


def _fetch(url: str, part: Path, opener: Opener, progress: bool, timeout: float) -> None:
    """Append the rest of ``url`` to ``part`` (or write it from the start when the server sends it all)."""
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = opener(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # nothing left to fetch: the part is complete
            return
        raise
    with response:
        start = _resume_offset(response, offset)
        if offset and start == 0:
            log.info("%s: the server ignored the range request; downloading from the start", url)
        length = response.headers.get("Content-Length")
        total = start + int(length) if length else None
        with part.open("r+b" if start else "wb") as out, tqdm(
            total=total, initial=start, unit="B", unit_scale=True, desc=part.name, disable=not progress
        ) as bar:
            out.seek(start)
            out.truncate()
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                bar.update(len(chunk))


def _resume_offset(response, offset: int) -> int:
    """Where the response's body starts in the file: ``offset`` for a matching 206 reply, else 0."""
    status = getattr(response, "status", None) or response.getcode()
    if not offset or status != 206:
        return 0
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    return offset if match and int(match.group(1)) == offset else 0


def extract_tar(archive: str | Path, dest_dir: str | Path, marker: str | Path, progress: bool = True) -> None:
    """Extract ``archive`` into ``dest_dir`` (tarfile's ``data`` filter: no absolute paths, links out of the
    folder or device files), then write ``marker``. Without the marker an extraction is incomplete, and
    running this again overwrites whatever a killed run left."""
    dest_dir, marker = Path(dest_dir), Path(marker)
    if marker.is_file():
        return
    dest_dir.mkdir(parents=True, exist_ok=True)
    count = 0
    with tarfile.open(archive, "r|*") as tar:  # one streaming pass over the compressed archive
        for member in tqdm(tar, desc=f"extract {Path(archive).name}", unit="file", disable=not progress):
            tar.extract(member, dest_dir, filter="data")
            count += 1
    write_text_atomic(marker, f"{Path(archive).name}: {count} members\n")
