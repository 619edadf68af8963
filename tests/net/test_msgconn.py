"""Message mode (pyfrp.net.msgconn) over real sockets and yamux streams, on both loops."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import pytest

from pyfrp.errors import FrameError, MessageError, ProtocolError
from pyfrp.net.layer import CryptoLayer
from pyfrp.net.msgconn import MessageConn
from pyfrp.net.mux import MuxSession, MuxStream
from pyfrp.proto.crypto import StreamDecryptor, StreamEncryptor, derive_key
from pyfrp.proto.framing import MessageDecoder, encode_message
from pyfrp.proto.msg import (
    Login,
    LoginResp,
    Message,
    NewProxy,
    NewWorkConn,
    Ping,
    Pong,
    ReqWorkConn,
    StartWorkConn,
)
from tests.net import test_mux
from tests.net.test_mux import Peer, Run, attach, until

run = test_mux.run  # the same both-loops fixture

KEY = derive_key("tok123")


@contextlib.asynccontextmanager
async def conn_and_raw() -> AsyncIterator[tuple[MessageConn, socket.socket]]:
    """A MessageConn on one end of a socketpair; the test plays the peer with the other end."""
    loop = asyncio.get_running_loop()
    a, raw = socket.socketpair()
    raw.setblocking(False)
    _, conn = await loop.create_connection(MessageConn, sock=a)
    try:
        yield conn, raw
    finally:
        conn.close()
        raw.close()
        await asyncio.sleep(0)


async def recv_frames(raw: socket.socket, decrypt: StreamDecryptor | None = None) -> list[Message]:
    """Read from the bare socket until at least one whole message has arrived."""
    loop = asyncio.get_running_loop()
    dec = MessageDecoder()
    while True:
        chunk = await loop.sock_recv(raw, 65536)
        assert chunk, "EOF"
        dec.feed(decrypt.decrypt(chunk) if decrypt else chunk)
        msgs = []
        while (m := dec.next_message()) is not None:
            msgs.append(m)
        if msgs:
            assert dec.buffered == 0
            return msgs


def test_frames_split_anywhere(run: Run) -> None:
    msgs: list[Message] = [
        Login(version="0.65.0", user="lab", privilege_key="k", timestamp=1, pool_count=1),
        NewProxy(proxy_name="ssh", proxy_type="tcp", remote_port=6000),
        Ping(),
    ]
    data = b"".join(encode_message(m) for m in msgs)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with conn_and_raw() as (conn, raw):

            async def trickle() -> None:
                for i in range(0, len(data), 7):
                    await loop.sock_sendall(raw, data[i : i + 7])
                    await asyncio.sleep(0.001)

            feeder = asyncio.create_task(trickle())
            assert [await conn.recv() for _ in msgs] == msgs
            await feeder

    run(main)


def test_many_frames_in_one_read(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with conn_and_raw() as (conn, raw):
            frames = [Ping(timestamp=i) for i in range(1, 6)]
            await loop.sock_sendall(raw, b"".join(encode_message(m) for m in frames))
            assert [await conn.recv() for _ in frames] == frames

    run(main)


def test_send_writes_one_frame(run: Run) -> None:
    async def main() -> None:
        async with conn_and_raw() as (conn, raw):
            conn.send(NewWorkConn(run_id="0123456789abcdef"))
            data = await asyncio.get_running_loop().sock_recv(raw, 100)
            assert data == bytes.fromhex("77000000000000001d") + b'{"run_id":"0123456789abcdef"}'

    run(main)


def test_push_layer_after_login_resp(run: Run) -> None:
    """LoginResp in plaintext and the first ciphertext in the same read, as frps may send them."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with conn_and_raw() as (conn, raw):
            enc = StreamEncryptor(KEY)
            await loop.sock_sendall(
                raw,
                encode_message(LoginResp(version="0.65.0", run_id="r"))
                + enc.encrypt(encode_message(ReqWorkConn())),
            )
            assert await conn.recv() == LoginResp(version="0.65.0", run_id="r")
            conn.push_layer(CryptoLayer, KEY)
            assert await conn.recv() == ReqWorkConn()
            await loop.sock_sendall(raw, enc.encrypt(encode_message(Pong())))
            assert await conn.recv() == Pong()
            conn.send(NewProxy(proxy_name="ssh"))
            assert await recv_frames(raw, StreamDecryptor(KEY)) == [NewProxy(proxy_name="ssh")]

    run(main)


def test_detach_returns_leftover_bytes(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with conn_and_raw() as (conn, raw):
            start = StartWorkConn(proxy_name="ssh", src_addr="1.2.3.4", src_port=5)
            await loop.sock_sendall(raw, encode_message(start) + b"SSH-2.0-user bytes")
            assert await conn.recv() == start
            transport, leftover, ended = conn.detach()
            assert leftover == b"SSH-2.0-user bytes"
            assert ended is False
            assert conn.transport is None
            # the new owner gets whatever arrives next
            peer = attach(transport, Peer())
            await loop.sock_sendall(raw, b"more")
            assert await peer.received(4) == b"more"
            transport.close()

    run(main)


def test_detach_after_peer_ended(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with conn_and_raw() as (conn, raw):
            await loop.sock_sendall(raw, encode_message(StartWorkConn()) + b"last")
            raw.shutdown(socket.SHUT_WR)
            assert await conn.recv() == StartWorkConn()
            assert conn.transport is not None
            await until(conn.transport.is_closing)  # the EOF arrived
            _, leftover, ended = conn.detach()
            assert (leftover, ended) == (b"last", True)

    run(main)


def test_eof_with_a_partial_frame_pending(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with conn_and_raw() as (conn, raw):
            await loop.sock_sendall(raw, encode_message(Ping()) + encode_message(Pong())[:4])
            raw.shutdown(socket.SHUT_WR)
            assert await conn.recv() == Ping()
            with pytest.raises(ConnectionError, match=r"inside a message \(4 bytes pending\)"):
                await conn.recv()
            _, leftover, ended = conn.detach()
            assert (leftover, ended) == (b"4\x00\x00\x00", True)

    run(main)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"F" + bytes(20), FrameError),  # wire v2 magic / garbage type byte
        (b"w" + (20000).to_bytes(8, "big"), FrameError),  # over the 10240 limit
        (b"w" + (2**64 - 1).to_bytes(8, "big"), FrameError),  # -1
        (b"w" + (3).to_bytes(8, "big") + b"{x}", MessageError),
        (b"w" + (2).to_bytes(8, "big") + b"[]", MessageError),
        (b"w" + (17).to_bytes(8, "big") + b'{"timestamp":1.5}', MessageError),
    ],
    ids=["type", "too-long", "negative", "json", "not-object", "float-int"],
)
def test_hostile_frame_raises_protocol_error(
    run: Run, data: bytes, error: type[ProtocolError]
) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with conn_and_raw() as (conn, raw):
            await loop.sock_sendall(raw, encode_message(Ping()) + data)
            assert await conn.recv() == Ping()
            with pytest.raises(error):
                await conn.recv()

    run(main)


def test_eof_raises_connection_error(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with conn_and_raw() as (conn, raw):
            await loop.sock_sendall(raw, encode_message(Ping()))
            raw.shutdown(socket.SHUT_WR)
            assert await conn.recv() == Ping()  # what came before the EOF is still delivered
            with pytest.raises(ConnectionError, match=r"connection closed$"):
                await conn.recv()
            with pytest.raises(ConnectionError):
                await conn.recv()
            with pytest.raises(ConnectionError):
                conn.send(Pong())

    run(main)


def test_waiting_recv_wakes_on_close(run: Run) -> None:
    async def main() -> None:
        async with conn_and_raw() as (conn, raw):
            waiting = asyncio.create_task(conn.recv())
            await asyncio.sleep(0.01)
            assert not waiting.done()
            raw.close()
            with pytest.raises(ConnectionError):
                await waiting

    run(main)


def test_recv_as(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with conn_and_raw() as (conn, raw):
            await loop.sock_sendall(raw, encode_message(Pong()) + encode_message(Ping()))
            assert await conn.recv_as(Pong) == Pong()
            with pytest.raises(ConnectionError, match="expected LoginResp, got Ping"):
                await conn.recv_as(LoginResp)

    run(main)


def test_a_flood_pauses_reading_until_recv_catches_up(run: Run) -> None:
    frames = [Ping(timestamp=i) for i in range(1, 6001)]  # ~100 KB of frames

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with conn_and_raw() as (conn, raw):
            await loop.sock_sendall(raw, b"".join(encode_message(m) for m in frames))
            await asyncio.sleep(0.05)
            assert conn.transport is not None
            assert not conn.transport.is_reading()  # nobody asked: stop reading
            assert [await conn.recv() for _ in frames] == frames
            assert conn.transport.is_reading()

    run(main)


def test_message_mode_over_a_yamux_stream(run: Run) -> None:
    """The control-connection path with tcp_mux: frames and a crypto layer on a stream."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        accepted: asyncio.Queue[MessageConn] = asyncio.Queue()

        def on_stream(stream: MuxStream) -> None:
            accepted.put_nowait(MessageConn.attach(stream))

        s1, s2 = socket.socketpair()
        client = MuxSession(client=True, keepalive_interval=0)
        server = MuxSession(client=False, keepalive_interval=0, on_stream=on_stream)
        await loop.create_connection(lambda: client, sock=s1)
        await loop.create_connection(lambda: server, sock=s2)
        try:
            frpc = MessageConn.attach(client.open_stream())
            frpc.send(Login(user="lab", pool_count=1))
            frps = await accepted.get()
            assert await frps.recv() == Login(user="lab", pool_count=1)
            frps.send(LoginResp(version="0.65.0", run_id="r"))
            frps.push_layer(CryptoLayer, KEY)
            frps.send(ReqWorkConn())
            assert await frpc.recv() == LoginResp(version="0.65.0", run_id="r")
            frpc.push_layer(CryptoLayer, KEY)
            assert await frpc.recv() == ReqWorkConn()
            frpc.send(NewProxy(proxy_name="ssh"))
            assert await frps.recv() == NewProxy(proxy_name="ssh")
            frpc.close()
            with pytest.raises(ConnectionError):
                await frps.recv()
        finally:
            client.close()
            server.close()
            await asyncio.gather(client.closed, server.closed)

    run(main)
