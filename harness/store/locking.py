"""One writer at a time per results location (``Location.locked``).

A local directory is locked with ``flock`` on ``<root>/.lock``: the kernel
releases it when its process dies, so a lock left by a crash is taken over,
and of several processes that find it at once exactly one gets it (an NFS
mount with locking behaves the same). A URI (object stores have no atomic
create) takes a lease object instead: see ``_leased``. Either way the lock file
names its holder (pid, host, command) for the message a refused run prints.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

from harness.errors import StoreError, one_line

if TYPE_CHECKING:
    from collections.abc import Iterator

    from harness.store.location import Location

LOCK = ".lock"  # held by the process writing a location
# how long a URI's writer waits after writing its lease before reading it back,
# so that a second writer that read "no lease" at the same moment has written
# its own by then, and one of the two sees the other's
LEASE_SETTLE_S = 1.0


@contextlib.contextmanager
def hold(loc: Location, what: str) -> Iterator[None]:
    """Hold ``loc``'s lock while ``what`` runs; a ``StoreError`` naming the
    holder when another process has it."""
    if loc.fs.type_name != "local":
        with _leased(loc, what):
            yield
        return

    created = not os.path.isdir(loc.root)
    try:
        os.makedirs(loc.root, exist_ok=True)
    except (NotADirectoryError, FileExistsError):
        raise StoreError(f"{loc.shown()}: not a directory (a file is in its path)") from None
    path = os.path.join(loc.root, LOCK)
    fd = _flock(loc, path, what)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # while still held: see _flock
        os.close(fd)
        if created:  # a run refused before it wrote anything leaves no directory
            with contextlib.suppress(OSError):
                os.rmdir(loc.root)


def _flock(loc: Location, path: str, what: str) -> int:
    """Open and ``flock`` the lock file at ``path``, writing who holds it;
    returns its descriptor. The holder removes the file while it still holds
    it, so a process that opened the old file before then finds, once it gets
    the lock, that the path no longer names what it locked, and tries again on
    the new file."""
    for _ in range(20):
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(os.read(fd, 4096))
            os.close(fd)
            raise _in_use(loc, holder) from None
        except OSError as exc:  # a filesystem without locks
            os.close(fd)
            raise StoreError(
                f"{loc.shown()}: cannot lock {LOCK} ({one_line(exc)}); use a local disk, "
                "or an NFS mount with locking"
            ) from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if not same:  # its holder finished and removed it after we opened it
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, _holding(what).encode())
        return fd
    raise StoreError(f"{loc.shown()}: another run is starting here; use another --out")


@contextlib.contextmanager
def _leased(loc: Location, what: str) -> Iterator[None]:
    """Hold ``<uri>/.lock`` on an object store: refuse when a live holder's
    lease is there; else write ours, wait ``LEASE_SETTLE_S`` and read it back.
    Of two writers that start together the later write wins, and the other
    finds it and stops. A holder on another host cannot be checked and counts
    as alive; one on this host whose process is gone is taken over. The lease
    is removed at the end."""
    held = _lease(loc)
    if held is not None and _alive(held):
        raise _in_use(loc, held, remove=True)
    token = uuid.uuid4().hex
    loc.write_bytes(LOCK, _holding(what, token).encode())
    time.sleep(LEASE_SETTLE_S)
    held = _lease(loc)
    if held is None or held.get("token") != token:
        raise StoreError(
            f"{loc.shown()}: another run started here at the same moment; wait for it to "
            "finish, or use another --out"
        )
    try:
        yield
    finally:
        held = _lease(loc)
        if held is not None and held.get("token") == token:
            with contextlib.suppress(OSError):
                loc.remove(loc.path(LOCK))


def _lease(loc: Location) -> dict[str, Any] | None:
    """The holder written in a URI's lease, None when there is none."""
    raw = loc.read_bytes(LOCK)
    return None if raw is None else (_holder(raw) or {})


def _in_use(loc: Location, holder: dict[str, Any] | None, remove: bool = False) -> StoreError:
    """The one line for a location another process holds."""
    if holder is None:
        return StoreError(
            f"{loc.shown()}: another run is starting here; wait for it to finish, or use "
            "another --out"
        )
    message = (
        f"{loc.shown()}: in use by {holder.get('what', 'another run')} "
        f"(pid {holder.get('pid')} on {holder.get('host')}); wait for it to finish, or use "
        "another --out"
    )
    if remove:  # a lease outlives its process: say how to clear it
        message += f". If that process is gone, remove {loc.shown(LOCK)}"
    return StoreError(message)


def _host() -> str:
    return socket.gethostname()


def _start(pid: int) -> str | None:
    """When a process started (Linux: jiffies since boot), to tell a live
    holder from a new process that reuses its pid; None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _holding(what: str, token: str | None = None) -> str:
    """The JSON a lock holder writes: who it is, so that a refused run can say."""
    pid = os.getpid()
    mine = {"pid": pid, "host": _host(), "start": _start(pid), "what": what}
    return json.dumps({**mine, "token": token} if token else mine)


def _holder(raw: bytes) -> dict[str, Any] | None:
    """A lock's holder, None while it is still being written."""
    try:
        holder = json.loads(raw.decode())
    except ValueError:
        return None
    return holder if isinstance(holder, dict) else None


def _alive(holder: dict[str, Any]) -> bool:
    """Whether the process that wrote a lock still runs. One on another host
    cannot be checked and counts as alive."""
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
