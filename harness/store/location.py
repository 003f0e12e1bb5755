"""A storage location: a local directory or a URI that pyarrow's filesystem
layer understands (``s3://``, ``gs://``, with query options such as
``?endpoint_override=...``), and the few operations the stores need on it.

Writes are atomic (a hidden temporary name, renamed into place, fsynced on
local disks), so a reader never sees half a file. An I/O error (a network
fault on S3 or GCS, a busy NFS server) is tried again with backoff and then
fails as ``StoreUnreachable``, with nothing moved. Only a file whose bytes
cannot be decoded as Parquet is corrupt: a run that holds the location's lock
(``Location.locked``) moves it aside to ``quarantine/`` (nothing is deleted);
a read-only command reports it and reads on without it.
``harness.store.results`` (a sweep's results) and ``harness.store.history`` (a nightly
history) build on this; nothing else in lrbench touches the filesystem of a
store.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import posixpath
import re
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from harness.errors import StoreError, StoreUnreachable, one_line
from harness.lazy import lazy
from harness.store.locking import hold
from harness.store.schemas import check_schema

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import pandas as pd
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq
    from pyarrow import fs
else:
    # the CLI imports this module at start-up: pandas and pyarrow load on first use
    pd = lazy("pandas")
    pa = lazy("pyarrow")
    ds = lazy("pyarrow.dataset")
    pq = lazy("pyarrow.parquet")
    fs = lazy("pyarrow.fs")

T = TypeVar("T")

QUARANTINE = "quarantine"  # where corrupt files are moved (``Location.set_aside``)
FILENAME = "__filename"  # the column ``read_dataset(with_files=True)`` adds

# An I/O error is tried again this many times in all, waiting BACKOFF_S, then
# twice that, and so on (0.5 + 1 + 2 + 4 s): longer than a connection reset or
# a throttled request lasts, short enough to say so before the user wonders.
TRIES = 5
BACKOFF_S = 0.5
# OSErrors that another try cannot fix
_LASTING = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR)


class _Vanished(Exception):
    """A file listed a moment ago is gone (a compaction merged it): list again."""


# Query options of a URI whose values are secrets (pyarrow's S3 and GCS options,
# and the usual names of tokens and passwords).
_SECRET_KEY = re.compile(
    r"(secret|token|password|passwd|credential|access_key|signature|key)", re.I
)
# a value ends at the next option, at white space or a quote, or before the
# ": " that follows a location in a message
_QUERY_ITEM = re.compile(r"([?&])([^=&\s?#]+)=([^&\s#'\"<>]*?)(?=[&\s#'\"<>]|:\s|:$|$)")
_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.I)


def redact(text: str) -> str:
    """``text`` with the secrets of any URI in it hidden: query options that
    carry a key, token or password, and ``user:password@`` before a host. Used
    wherever a location is shown (console, errors, report pages, folder names)."""
    if "://" not in text:
        return text

    def hide(m: re.Match[str]) -> str:
        sep, key, value = m.groups()
        return f"{sep}{key}={'***' if _SECRET_KEY.search(key) and value else value}"

    return _USERINFO.sub(r"\1***@", _QUERY_ITEM.sub(hide, text))


def redact_json(value: Any) -> Any:
    """JSON-able data with the secrets of every URI in its strings hidden
    (``redact``): what is stored, such as a manifest's run entries."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_json(v) for v in value]
    return value


def child(out: str, *parts: str) -> str:
    """A path or URI below ``out``; a URI's query (``?endpoint_override=...``) stays last."""
    base, sep, query = out.partition("?") if "://" in out else (out, "", "")
    return posixpath.join(base.rstrip("/"), *parts) + sep + query


def filesystem(out: str) -> tuple[Any, str]:
    """A pyarrow filesystem and the root path in it, for a local path or a URI."""
    if "://" in out:
        try:
            return fs.FileSystem.from_uri(out)
        except Exception as exc:  # an unknown scheme, missing credentials ...
            raise StoreError(redact(f"{out}: cannot open results location ({exc})")) from None
    return fs.LocalFileSystem(), os.path.abspath(out)


class Location:
    """A directory or URI, with atomic writes and checked dataset reads."""

    def __init__(self, out: str) -> None:
        self.out = str(out)
        self.fs, self.root = filesystem(self.out)
        # True while this process holds the lock (``locked``): only then are
        # corrupt files moved aside; a reader reports them and skips them
        self.writing = False
        self._reported: set[str] = set()

    def retrying(self, what: str, call: Callable[[], T], vanish_ok: bool = False) -> T:
        """``call()``, tried again with backoff while it fails with an I/O error
        that another try may fix (not a full disk, a missing permission or file);
        after ``TRIES`` a ``StoreUnreachable`` naming ``what``. ``vanish_ok``: a
        listed file that is gone (``_Vanished``) is a reason to try again too."""
        for attempt in range(TRIES):
            try:
                return call()
            except _Vanished:
                if not vanish_ok or attempt == TRIES - 1:
                    raise StoreUnreachable(
                        f"{self.shown()}: {what}: its files kept changing while read; "
                        "nothing was moved: run the command again"
                    ) from None
            except OSError as exc:
                if not transient(exc):
                    raise
                if attempt == TRIES - 1:
                    raise StoreUnreachable(
                        f"{self.shown()}: {what} failed {TRIES} times ({one_line(exc)}); "
                        "nothing was moved or retrained: run the command again once the "
                        "storage answers"
                    ) from None
                print(
                    f"warning: {self.shown()}: {what}: {one_line(exc)}; trying again",
                    file=sys.stderr,
                )
            time.sleep(BACKOFF_S * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def path(self, *parts: str) -> str:
        """The filesystem path of ``parts`` below the root."""
        return posixpath.join(self.root, *parts)

    def uri(self, *parts: str) -> str:
        """``parts`` below the location, as the user gave it."""
        return child(self.out, *parts)

    def shown(self, *parts: str) -> str:
        """``uri(*parts)`` with its secrets hidden: for messages and pages."""
        return redact(self.uri(*parts))

    def exists(self, path: str) -> bool:
        """True when the filesystem path exists (a file or a folder)."""
        return self.retrying(f"looking up {self._relative(path)}", lambda: self._exists(path))

    def _exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type != fs.FileType.NotFound

    def has(self, name: str) -> bool:
        """True when ``name`` (``manifest.json``, ``trials``, ...) exists here."""
        return self.exists(self.path(name))

    def atomic_write(self, path: str, write: Callable[[Any], Any]) -> None:
        """Write the file at ``path`` with ``write(sink)`` under a hidden temporary
        name, then rename it into place; a write that fails with an I/O error is
        written again from the start (``retrying``)."""
        self.retrying(f"writing {self._relative(path)}", lambda: self._write_once(path, write))

    def _write_once(self, path: str, write: Callable[[Any], Any]) -> None:
        directory, name = posixpath.split(path)
        self.fs.create_dir(directory, recursive=True)
        tmp = posixpath.join(directory, f".{name}.{uuid.uuid4().hex}.tmp")
        try:
            with self.fs.open_output_stream(tmp) as sink:
                write(sink)
            self._sync(tmp)  # the bytes are on disk before the name says they are
            self.fs.move(tmp, path)
            self._sync(directory)  # and so is the rename
        except BaseException:
            with contextlib.suppress(OSError):
                self.fs.delete_file(tmp)
            raise

    def _sync(self, path: str) -> None:
        """fsync a local file or directory; object stores commit on close."""
        if self.fs.type_name != "local":
            return

        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def locked(self, what: str) -> Iterator[None]:
        """Hold this location's lock while ``what`` runs (``harness.store.locking``),
        so that a second process aimed at it stops at once instead of doing the
        same work and racing on the manifest and the compacted parts. Only a
        holder of the lock moves corrupt files aside (``writing``)."""
        with hold(self, what):
            self.writing = True
            try:
                yield
            finally:
                self.writing = False

    def write_bytes(self, name: str, payload: bytes) -> None:
        """Write a file (a figure, a manifest) at ``name``, atomically."""
        self.atomic_write(self.path(name), lambda sink: sink.write(payload))

    def write_parquet(self, name: str, table: pa.Table) -> None:
        """Write ``table`` as the Parquet file ``name``, atomically."""
        self.atomic_write(self.path(name), lambda sink: pq.write_table(table, sink))

    def read_bytes(self, name: str) -> bytes | None:
        """The content of the file ``name``, None when there is none."""
        path = self.path(name)

        def read() -> bytes | None:
            if not self._exists(path):
                return None
            with self.fs.open_input_stream(path) as f:
                return f.read()

        return self.retrying(f"reading {name}", read)

    def read_json(self, name: str) -> dict[str, Any]:
        """A JSON file's content; one that does not parse is a ``StoreError``
        naming it (an I/O error is tried again: ``retrying``)."""

        def read() -> bytes:
            with self.fs.open_input_stream(self.path(name)) as f:
                return f.read()

        try:
            return json.loads(self.retrying(f"reading {name}", read).decode())
        except (OSError, ValueError) as exc:
            raise StoreError(f"{self.shown(name)}: unreadable JSON ({one_line(exc)})") from None

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        """Write ``data`` as indented JSON at ``name``, atomically."""
        payload = json.dumps(data, indent=2, sort_keys=True, default=str).encode()
        self.write_bytes(name, payload)

    def entries(self, folder: str, recursive: bool = False) -> list[Any]:
        """The pyarrow ``FileInfo`` of each entry below ``folder`` (none if absent)."""
        return self.retrying(f"listing {folder}/", lambda: self._entries(folder, recursive))

    def _entries(self, folder: str, recursive: bool = False) -> list[Any]:
        selector = fs.FileSelector(self.path(folder), recursive=recursive, allow_not_found=True)
        try:
            return list(self.fs.get_file_info(selector))
        except NotADirectoryError:  # a file where the folder belongs holds no entries
            return []

    def remove(self, path: str) -> None:
        """Delete the file at the filesystem ``path``."""
        self.retrying(f"removing {self._relative(path)}", lambda: self.fs.delete_file(path))

    def delete_dir(self, name: str) -> None:
        """Delete the folder ``name`` and everything in it."""
        self.fs.delete_dir(self.path(name))

    def read_dataset(
        self,
        folder: str,
        schema: pa.Schema,
        columns: list[str] | None = None,
        partition: pa.Schema | None = None,
        keep: Callable[[str], bool] | None = None,
        with_files: bool = False,
    ) -> pa.Table:
        """Read a dataset folder with the given schema; ``partition`` names hive
        partition columns (``date=...``); ``keep``, given, says by file name
        which files to read; ``with_files`` adds the ``__filename`` column (each
        row's file, as a path of this filesystem).

        An I/O error is tried again (``retrying``); a file listed a moment ago
        that is gone (merged by a compaction) makes the read start over. A file
        whose bytes are not Parquet (bad magic, a broken footer, data that does
        not decode) is corrupt: it is set aside (``set_aside``) and the rest is
        read. A Parquet file of another schema (an older or newer lrbench) is
        refused with a ``StoreError`` naming it and its columns."""
        wanted = list(columns or schema.names) + ([FILENAME] if with_files else [])
        return self.retrying(
            f"reading {folder}/",
            lambda: self._read_dataset(folder, schema, wanted, partition, keep),
            vanish_ok=True,
        )

    def _read_dataset(
        self,
        folder: str,
        schema: pa.Schema,
        columns: list[str],
        partition: pa.Schema | None,
        keep: Callable[[str], bool] | None,
    ) -> pa.Table:
        path = self.path(folder)
        partitioning = ds.partitioning(partition, flavor="hive") if partition else None
        in_files = without(schema, partition.names if partition else [])
        files = []
        for info in self._entries(folder, recursive=True):
            if info.type != fs.FileType.File or info.base_name.startswith((".", "_")):
                continue  # folders, and temporary files of writes in progress
            if keep is not None and not keep(info.base_name):
                continue
            if not info.base_name.endswith(".parquet"):
                self.set_aside(info.path, "not a Parquet file")
                continue
            physical = self._footer(info.path)
            if physical is None:
                continue
            check_schema(info.path, physical, in_files)
            files.append(info.path)
        if not files:
            empty = pa.schema([*schema, pa.field(FILENAME, pa.string())]).empty_table()
            return empty.select(columns)
        while True:
            try:
                dataset = ds.dataset(
                    files,
                    schema=schema,
                    format="parquet",
                    filesystem=self.fs,
                    partitioning=partitioning,
                    partition_base_dir=path,
                )
            except FileNotFoundError:
                raise _Vanished() from None
            try:
                return dataset.to_table(columns=columns)
            except FileNotFoundError:
                raise _Vanished() from None
            except (pa.ArrowInvalid, OSError) as exc:
                bad = self._which_is_corrupt(dataset)
                if bad is None:
                    if isinstance(exc, OSError):
                        raise  # an I/O error: tried again
                    raise StoreError(
                        f"{self.shown()}: cannot read results ({one_line(exc)})"
                    ) from None
                self.set_aside(bad[0], f"corrupt Parquet data ({bad[1]})")
                files.remove(bad[0])

    def _footer(self, path: str) -> pa.Schema | None:
        """A file's Parquet schema; None when its bytes are not Parquet (the file
        is then set aside). An I/O error propagates, to be tried again."""
        try:
            with self.fs.open_input_file(path) as f:
                return pq.read_schema(f)
        except FileNotFoundError:
            raise _Vanished() from None
        except (pa.ArrowInvalid, OSError):
            # pyarrow raises OSError for a thrift footer that does not decode as
            # well as for a dropped connection: decode the bytes in memory to tell
            why = self._undecodable(path, lambda data: pq.read_schema(pa.BufferReader(data)))
            if why is None:
                raise
            self.set_aside(path, f"corrupt or unreadable Parquet ({why})")
            return None

    def _undecodable(self, path: str, decode: Callable[[Any], Any]) -> str | None:
        """Why the bytes of ``path``, read into memory, do not ``decode``; None
        when they do. Reading them is I/O: its error propagates."""
        with self.fs.open_input_file(path) as f:
            data = f.read()
        try:
            decode(data)
        except Exception as exc:
            return one_line(exc)
        return None

    def _which_is_corrupt(self, dataset: Any) -> tuple[str, str] | None:
        """The first file of a dataset whose data does not decode, and why; None
        when every file reads (the failure was I/O). A file that fails is read
        into memory and decoded there, so that only a decoding error, never a
        network fault, makes it corrupt."""
        for fragment in dataset.get_fragments():
            try:
                fragment.to_table()
            except FileNotFoundError:
                raise _Vanished() from None
            except (pa.ArrowInvalid, OSError):
                why = self._undecodable(
                    fragment.path, lambda data: pq.ParquetFile(pa.BufferReader(data)).read()
                )
                if why is not None:
                    return fragment.path, why
        return None

    def _relative(self, path: str) -> str:
        return path[len(self.root) :].lstrip("/") if path.startswith(self.root) else path

    def set_aside(self, path: str, problem: str) -> None:
        """Deal with a corrupt file: a run that holds the lock moves it to
        ``quarantine/`` (``quarantine``), so that what it held runs again; any
        other reader says so once and reads on without it, leaving it where it
        is (a sweep or ``lrbench compact`` may be writing next to it)."""
        if self.writing:
            self.quarantine(path, problem)
            return
        if path not in self._reported:
            self._reported.add(path)
            print(
                f"warning: {self.shown(self._relative(path))}: {problem}; skipped, and left "
                "in place (a run that writes here, such as a sweep, `lrbench compact` or a "
                "night, moves it to quarantine/)",
                file=sys.stderr,
            )

    def quarantine(self, path: str, problem: str) -> str:
        """Move a corrupt file to ``quarantine/`` under this location, keeping its
        path and adding the time: nothing is deleted. Says so in one line on
        stderr, and returns where it went. Only under the lock (``set_aside``)."""
        relative = self._relative(path)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = posixpath.join(self.root, QUARANTINE, f"{relative}.{stamp}")

        def move() -> None:
            self.fs.create_dir(posixpath.dirname(target), recursive=True)
            self.fs.move(path, target)

        self.retrying(f"moving {relative} to {QUARANTINE}/", move)
        where = self.shown(QUARANTINE, f"{relative}.{stamp}")
        print(f"warning: {self.shown(relative)}: {problem}; moved to {where}", file=sys.stderr)
        return target


def transient(exc: OSError) -> bool:
    """True for an I/O error that another try may fix: a network fault, a
    timeout, a throttled request; not a full disk, a read-only or forbidden
    location, or a file that is not there."""
    if isinstance(exc, FileNotFoundError | IsADirectoryError | NotADirectoryError):
        return False
    if isinstance(exc, PermissionError):
        return False
    return exc.errno not in _LASTING


def without(schema: pa.Schema, names: list[str]) -> pa.Schema:
    """``schema`` less the named columns."""
    return pa.schema([f for f in schema if f.name not in names])


def to_table(
    rows: list[dict[str, Any]], schema: pa.Schema, metadata: dict[bytes, bytes]
) -> pa.Table:
    """Rows (``records.to_columns``) as an Arrow table of ``schema`` with ``metadata``."""
    table = pa.Table.from_pylist(rows, schema=schema) if rows else schema.empty_table()
    return table.replace_schema_metadata(metadata)


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """An Arrow table as a DataFrame; nullable integers stay integers
    (``steps_to_target`` is null unless reached)."""
    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
