"""A storage location: a local directory or a URI that pyarrow's filesystem
layer understands (``s3://``, ``gs://``, with query options such as
``?endpoint_override=...``), and the few operations the stores need on it.

Writes are atomic (a hidden temporary name, renamed into place, fsynced on
local disks), so a reader never sees half a file. Dataset reads check each
file's schema first; a file that cannot be read at all is moved aside to
``quarantine/`` (nothing is deleted) and the read goes on without it.
``harness.store`` (a sweep's results) and ``harness.history`` (a nightly
history) build on this; nothing else in lrbench touches the filesystem of a
store.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import re
import sys
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from harness.errors import StoreError, one_line
from harness.schemas import check_schema

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import pandas as pd
    import pyarrow as pa


LOCK = ".lock"  # held by the process writing a local directory (``Location.locked``)
QUARANTINE = "quarantine"  # where unreadable files are moved (``Location.quarantine``)


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


def child(out: str, *parts: str) -> str:
    """A path or URI below ``out``; a URI's query (``?endpoint_override=...``) stays last."""
    base, sep, query = out.partition("?") if "://" in out else (out, "", "")
    return posixpath.join(base.rstrip("/"), *parts) + sep + query


def filesystem(out: str) -> tuple[Any, str]:
    """A pyarrow filesystem and the root path in it, for a local path or a URI."""
    import os

    from pyarrow import fs

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
        from pyarrow import fs

        return self.fs.get_file_info(path).type != fs.FileType.NotFound

    def has(self, name: str) -> bool:
        """True when ``name`` (``manifest.json``, ``trials``, ...) exists here."""
        return self.exists(self.path(name))

    def atomic_write(self, path: str, write: Callable[[Any], Any]) -> None:
        """Write the file at ``path`` with ``write(sink)`` under a hidden temporary
        name, then rename it into place."""
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
        import os

        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def locked(self, what: str) -> Iterator[None]:
        """Hold ``<root>/.lock`` while ``what`` runs, so that a second process
        aimed at the same local directory stops at once instead of doing the same
        work and racing on the manifest. A lock left by a process that is gone
        (on this host) is taken over. Object stores have no atomic create, so
        there is no lock on a URI (see docs/results.md)."""
        if self.fs.type_name != "local":
            yield
            return
        import os

        created = not os.path.isdir(self.root)
        os.makedirs(self.root, exist_ok=True)
        path = os.path.join(self.root, LOCK)
        mine = json.dumps(
            {"pid": os.getpid(), "host": _host(), "start": _start(os.getpid()), "what": what}
        )
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read_lock(path)
                if holder is None and _age_s(path) < 5:  # being written by a run starting now
                    raise StoreError(
                        f"{self.shown()}: another run is starting here; wait for it to finish, "
                        "or use another --out"
                    ) from None
                if holder is not None and _alive(holder):
                    raise StoreError(
                        f"{self.shown()}: in use by {holder.get('what', 'another run')} "
                        f"(pid {holder.get('pid')} on {holder.get('host')}); wait for it to "
                        f"finish, or use another --out. If that process is gone, remove "
                        f"{self.shown(LOCK)}"
                    ) from None
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(mine)
            break
        else:
            raise StoreError(f"{self.shown()}: another run is starting here; use another --out")
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            if created:  # a run refused before it wrote anything leaves no directory
                with contextlib.suppress(OSError):
                    os.rmdir(self.root)

    def write_bytes(self, name: str, payload: bytes) -> None:
        """Write a file (a figure, a manifest) at ``name``, atomically."""
        self.atomic_write(self.path(name), lambda sink: sink.write(payload))

    def write_parquet(self, name: str, table: pa.Table) -> None:
        """Write ``table`` as the Parquet file ``name``, atomically."""
        import pyarrow.parquet as pq

        self.atomic_write(self.path(name), lambda sink: pq.write_table(table, sink))

    def read_json(self, name: str) -> dict[str, Any]:
        """A JSON file's content; an unreadable one is a ``StoreError`` naming it."""
        try:
            with self.fs.open_input_stream(self.path(name)) as f:
                return json.loads(f.read().decode())
        except (OSError, ValueError) as exc:
            raise StoreError(f"{self.shown(name)}: unreadable JSON ({one_line(exc)})") from None

    def write_json(self, name: str, data: dict[str, Any]) -> None:
        """Write ``data`` as indented JSON at ``name``, atomically."""
        payload = json.dumps(data, indent=2, sort_keys=True, default=str).encode()
        self.write_bytes(name, payload)

    def entries(self, folder: str, recursive: bool = False) -> list[Any]:
        """The pyarrow ``FileInfo`` of each entry below ``folder`` (none if absent)."""
        from pyarrow import fs

        path = self.path(folder)
        if not self.exists(path):
            return []
        return list(self.fs.get_file_info(fs.FileSelector(path, recursive=recursive)))

    def remove(self, path: str) -> None:
        """Delete the file at the filesystem ``path``."""
        self.fs.delete_file(path)

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
    ) -> pa.Table:
        """Read a dataset folder with the given schema; ``partition`` names hive
        partition columns (``date=...``); ``keep``, given, says by file name
        which files to read.

        A file that is not Parquet, or is corrupt, truncated or empty, is moved
        aside (``quarantine``) and the rest is read. A Parquet file of another
        schema (an older or newer lrbench) is refused with a ``StoreError``
        naming it and its columns."""
        import pyarrow.dataset as ds
        import pyarrow.parquet as pq
        from pyarrow.fs import FileType

        path = self.path(folder)
        if not self.exists(path):
            return schema.empty_table().select(columns) if columns else schema.empty_table()
        partitioning = ds.partitioning(partition, flavor="hive") if partition else None
        in_files = without(schema, partition.names if partition else [])
        files = []
        for info in self.entries(folder, recursive=True):
            if info.type != FileType.File or info.base_name.startswith((".", "_")):
                continue  # folders, and temporary files of writes in progress
            if keep is not None and not keep(info.base_name):
                continue
            if not info.base_name.endswith(".parquet"):
                self.quarantine(info.path, "not a Parquet file")
                continue
            try:
                with self.fs.open_input_file(info.path) as f:
                    physical = pq.read_schema(f)
            except Exception as exc:
                self.quarantine(info.path, f"corrupt or unreadable Parquet ({one_line(exc)})")
                continue
            check_schema(info.path, physical, in_files)
            files.append(info.path)
        while True:
            dataset = ds.dataset(
                files,
                schema=schema,
                format="parquet",
                filesystem=self.fs,
                partitioning=partitioning,
                partition_base_dir=path,
            )
            try:
                return dataset.to_table(columns=columns)
            except Exception as exc:  # a footer that reads, with data that does not
                bad = self._which_is_corrupt(dataset)
                if bad is None:
                    raise StoreError(
                        f"{self.shown()}: cannot read results ({one_line(exc)})"
                    ) from None
                self.quarantine(bad[0], f"corrupt Parquet data ({bad[1]})")
                files.remove(bad[0])

    def _which_is_corrupt(self, dataset: Any) -> tuple[str, str] | None:
        """The first file of a dataset whose data cannot be read, and why."""
        for fragment in dataset.get_fragments():
            try:
                fragment.to_table()
            except Exception as inner:
                return fragment.path, one_line(inner)
        return None

    def quarantine(self, path: str, problem: str) -> str:
        """Move a file that cannot be read to ``quarantine/`` under this location,
        keeping its path and adding the time: nothing is deleted. Says so in one
        line on stderr, and returns where it went."""
        relative = path[len(self.root) :].lstrip("/") if path.startswith(self.root) else path
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = posixpath.join(self.root, QUARANTINE, f"{relative}.{stamp}")
        self.fs.create_dir(posixpath.dirname(target), recursive=True)
        self.fs.move(path, target)
        where = self.shown(QUARANTINE, f"{relative}.{stamp}")
        print(f"warning: {self.shown(relative)}: {problem}; moved to {where}", file=sys.stderr)
        return target


def _host() -> str:
    import socket

    return socket.gethostname()


def _start(pid: int) -> str | None:
    """When a process started (Linux: jiffies since boot), to tell a live
    holder from a new process that reuses its pid; None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _age_s(path: str) -> float:
    import os
    import time

    try:
        return time.time() - os.stat(path).st_mtime
    except OSError:
        return float("inf")


def _read_lock(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None  # half written by a process killed at once: stale


def _alive(holder: dict[str, Any]) -> bool:
    """Whether the process that wrote a lock still runs. One on another host
    cannot be checked and counts as alive."""
    import os

    if holder.get("host") != _host():
        return True
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    start = _start(pid)
    return start is None or holder.get("start") is None or start == holder.get("start")


def without(schema: pa.Schema, names: list[str]) -> pa.Schema:
    """``schema`` less the named columns."""
    import pyarrow as pa

    return pa.schema([f for f in schema if f.name not in names])


def to_table(
    rows: list[dict[str, Any]], schema: pa.Schema, metadata: dict[bytes, bytes]
) -> pa.Table:
    """Rows (``records.to_columns``) as an Arrow table of ``schema`` with ``metadata``."""
    import pyarrow as pa

    table = pa.Table.from_pylist(rows, schema=schema) if rows else schema.empty_table()
    return table.replace_schema_metadata(metadata)


def to_pandas(table: pa.Table) -> pd.DataFrame:
    """An Arrow table as a DataFrame; nullable integers stay integers
    (``steps_to_target`` is null unless reached)."""
    import pandas as pd
    import pyarrow as pa

    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
