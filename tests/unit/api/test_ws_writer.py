"""The direct frame writer: byte-exact WebSocket text frames, framed once per shared message."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode
from websockets.protocol import CLIENT, Protocol, State

from rtpm.api.ws_server import BACKED_UP_BYTES, DirectFrameWriter, text_frame
from rtpm.realtime.protocol import Frame, encode_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_text_frame_is_what_websockets_would_send(size: int) -> None:
    data = b"x" * size
    assert text_frame(data) == WsFrame(Opcode.TEXT, data).serialize(mask=False, extensions=[])


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.buffered = 0
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.buffered


def fake_protocol(*, extensions: list[Any] | None = None) -> Any:
    conn = SimpleNamespace(extensions=extensions or [], state=State.OPEN)
    return SimpleNamespace(
        handshake_complete=True, conn=conn, close_sent=False, disconnected=False, transport=FakeTransport()
    )


def client_reads(data: bytes) -> list[str]:
    """What a real client makes of the bytes: the text messages, in order."""
    client = Protocol(CLIENT, state=State.OPEN)
    client.receive_data(data)
    return [e.data.decode() for e in client.events_received() if e.opcode is Opcode.TEXT]  # type: ignore[union-attr]


def test_one_write_per_call_shared_bytes_and_a_client_reads_every_message() -> None:
    shared = encode_frame({"type": "metric", "series": {"__name__": "cpu"}, "pad": "y" * 300}, 0)
    own = Frame(b'{"type":"pong"}')
    a, b = fake_protocol(), fake_protocol()
    wa, wb = DirectFrameWriter(a), DirectFrameWriter(b)
    assert wa.usable and wb.usable
    wa.write([own, shared])
    wb.write([shared])
    assert len(a.transport.written) == 1 and len(b.transport.written) == 1  # one write per call
    assert shared.wire is not None and b.transport.written[0] is shared.wire  # framed once, same bytes
    assert client_reads(a.transport.written[0]) == [own.text, shared.text]


def test_not_usable_with_compression_and_silent_once_closing() -> None:
    assert not DirectFrameWriter(fake_protocol(extensions=[object()])).usable
    p = fake_protocol()
    w = DirectFrameWriter(p)
    p.close_sent = True
    w.write([Frame(b"{}")])
    assert p.transport.written == []


def test_backed_up_past_the_high_water_mark() -> None:
    p = fake_protocol()
    w = DirectFrameWriter(p)
    p.transport.buffered = BACKED_UP_BYTES
    assert not w.backed_up()
    p.transport.buffered = BACKED_UP_BYTES + 1
    assert w.backed_up()
