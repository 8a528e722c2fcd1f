"""Network guard for every tool the tests run (put on PYTHONPATH by tests/helpers.tool_env).

With ``YOUNG_NETWORK_LOG`` set, any socket connect or name lookup in the
process (and in the worker processes it spawns, which inherit the variable)
fails at once and is appended to that file, so the test session can assert
that compute made no network attempt at all.  Local IPC of MPI (Unix sockets
and loopback) stays allowed.
"""

import os
import socket

_LOG = os.environ.get("YOUNG_NETWORK_LOG")

if _LOG:
    _connect = socket.socket.connect
    _connect_ex = socket.socket.connect_ex

    def _local(address) -> bool:
        if isinstance(address, (str, bytes)):  # AF_UNIX
            return True
        host = str(address[0]) if isinstance(address, tuple) and address else ""
        return host.startswith("127.") or host in ("::1", "localhost", "")

    def _record(what: str) -> None:
        with open(_LOG, "a") as fh:
            fh.write(f"{os.getpid()} {what}\n")

    def _guard_connect(self, address):
        if not _local(address):
            _record(f"connect {address!r}")
            raise OSError("network access blocked by the YOUNG test guard")
        return _connect(self, address)

    def _guard_connect_ex(self, address):
        if not _local(address):
            _record(f"connect_ex {address!r}")
            raise OSError("network access blocked by the YOUNG test guard")
        return _connect_ex(self, address)

    _getaddrinfo = socket.getaddrinfo

    def _guard_getaddrinfo(host, *args, **kwargs):
        if host not in (None, "localhost", "127.0.0.1", "::1"):
            _record(f"getaddrinfo {host!r}")
            raise socket.gaierror("name lookup blocked by the YOUNG test guard")
        return _getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = _guard_connect
    socket.socket.connect_ex = _guard_connect_ex
    socket.getaddrinfo = _guard_getaddrinfo
