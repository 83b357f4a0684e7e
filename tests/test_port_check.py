"""The dashboard's port check: a listening port is taken; one a stopped dashboard's
connections still linger on (TIME_WAIT) is free, as the server's own bind finds it."""

from __future__ import annotations

import socket
from pathlib import Path
from wsgiref.simple_server import WSGIServer

import pytest

from autocompress.dashboard import check_port_free
from autocompress.errors import UserError

HOST = "127.0.0.1"


def test_a_listening_port_is_taken_and_a_lingering_one_is_free() -> None:
    listener = socket.create_server((HOST, 0))
    port = listener.getsockname()[1]
    with pytest.raises(UserError, match=f"{HOST}:{port} is already in use"):
        check_port_free(HOST, port)
    client = socket.create_connection((HOST, port))
    served, _ = listener.accept()
    served.close()  # the server side closes first: its end of the connection waits
    client.close()
    listener.close()
    lingering = [
        line for line in Path("/proc/net/tcp").read_text().splitlines() if f":{port:04X} " in line
    ]
    assert any(line.split()[3] == "06" for line in lingering)  # 06: TIME_WAIT
    check_port_free(HOST, port)  # no error: the dashboard can start again at once
    assert WSGIServer.allow_reuse_address  # and its own bind does the same
