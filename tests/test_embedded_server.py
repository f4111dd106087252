"""The embedded nats-server's ports: chosen outside the ephemeral range, chosen again when
another process takes one first (a bench with 10,000 client connections did)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from praxis.bus import embedded
from praxis.bus.embedded import EmbeddedServerError, NatsServer


def test_a_free_port_is_below_the_ephemeral_range() -> None:
    low, _ = embedded._ephemeral_range()
    ports = {embedded.free_port() for _ in range(20)}
    assert all(10_000 <= port < low for port in ports), (low, ports)


@pytest.fixture
def taken() -> Iterator[int]:
    """A loopback port another process listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_a_chosen_port_taken_before_the_server_listens_is_chosen_again(
    tmp_path: Path, taken: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = embedded.free_port
    handed = iter([taken])  # the first port chosen is taken meanwhile; later ones are free
    monkeypatch.setattr(embedded, "free_port", lambda: next(handed, None) or real())
    server = NatsServer(tmp_path / "js", log_file=tmp_path / "nats.log").start()
    try:
        assert server.port != taken
        assert "address already in use" in (tmp_path / "nats.log").read_text()
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as c:
            assert c.recv(4).startswith(b"INFO")
    finally:
        server.stop()


def test_a_port_given_and_taken_is_an_error_at_once(tmp_path: Path, taken: int) -> None:
    server = NatsServer(tmp_path / "js", port=taken, log_file=tmp_path / "nats.log")
    with pytest.raises(EmbeddedServerError, match="exited"):
        server.start()
    assert (tmp_path / "nats.log").read_text().count("address already in use") == 1
