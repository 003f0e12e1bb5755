"""Faults for the store tests: a pyarrow filesystem whose reads fail the way a
network fails, and a TCP proxy that resets connections to a real (moto) S3
server. Both count what they did, so a test can show its fault really hit."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from typing import Any

from pyarrow import fs

NETWORK_ERROR = "AWS Error NETWORK_CONNECTION during GetObject operation: connection reset"


class FlakyHandler(fs.FileSystemHandler):
    """The local filesystem, except that reads (listings, lookups, opening a
    file to read) fail with a network ``OSError``: the 1st, 3rd, 8th, 20th
    call and every 30th after, while ``flaky`` failures are left (spaced so
    that a read of a few dozen files fits between two); or every call while
    ``down``."""

    def __init__(self, flaky: int = 0, down: bool = False) -> None:
        self.local = fs.LocalFileSystem()
        self.flaky = flaky
        self.down = down
        self.calls = 0
        self.failed = 0

    def _maybe_fail(self) -> None:
        self.calls += 1
        scheduled = self.calls in (1, 3, 8) or self.calls % 30 == 20
        if self.down or (self.flaky > 0 and scheduled):
            self.flaky -= 1
            self.failed += 1
            raise OSError(NETWORK_ERROR)

    # reads: these fail
    def get_file_info(self, paths: list[str]) -> list[Any]:
        self._maybe_fail()
        return self.local.get_file_info(paths)

    def get_file_info_selector(self, selector: Any) -> list[Any]:
        self._maybe_fail()
        return self.local.get_file_info(selector)

    def open_input_stream(self, path: str) -> Any:
        self._maybe_fail()
        return self.local.open_input_stream(path)

    def open_input_file(self, path: str) -> Any:
        self._maybe_fail()
        return self.local.open_input_file(path)

    # everything else: the local filesystem's
    def get_type_name(self) -> str:
        return "flaky"

    def normalize_path(self, path: str) -> str:
        return self.local.normalize_path(path)

    def equals(self, other: Any) -> bool:
        return self is other

    def create_dir(self, path: str, recursive: bool) -> None:
        self.local.create_dir(path, recursive=recursive)

    def delete_dir(self, path: str) -> None:
        self.local.delete_dir(path)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        self.local.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self) -> None:
        raise OSError("not in a test")

    def delete_file(self, path: str) -> None:
        self.local.delete_file(path)

    def move(self, src: str, dest: str) -> None:
        self.local.move(src, dest)

    def copy_file(self, src: str, dest: str) -> None:
        self.local.copy_file(src, dest)

    def open_output_stream(self, path: str, metadata: Any = None) -> Any:
        return self.local.open_output_stream(path, metadata=metadata)

    def open_append_stream(self, path: str, metadata: Any = None) -> Any:
        return self.local.open_append_stream(path, metadata=metadata)


class FlakyProxy:
    """A TCP proxy on localhost in front of ``port``. ``fail(n)`` drops every
    open connection and resets the next ``n`` new ones (RST, as a dropped
    network does); ``dropped`` counts the resets."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.faults = 0
        self.dropped = 0
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def fail(self, n: int) -> None:
        with self._lock:
            self.faults = n
            for sock in self._open:
                _reset(sock)
            self._open.clear()

    def close(self) -> None:
        self.server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            with self._lock:
                if self.faults > 0:
                    self.faults -= 1
                    self.dropped += 1
                    _reset(client)
                    continue
                upstream = socket.create_connection(("127.0.0.1", self.target))
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset instead of an orderly close."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass
