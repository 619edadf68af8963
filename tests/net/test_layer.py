"""Filter transports (pyfrp.net.layer) against a peer that uses the sans-IO codecs directly.

The far end is a bare socket: whatever it sends is encoded with pyfrp.proto.crypto / snappy by
hand, whatever it receives is decoded the same way. Both loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
from collections.abc import AsyncIterator, Callable

from pyfrp.net.layer import CompressLayer, CryptoLayer, Layer, insert_layer
from pyfrp.net.workconn import wrap_work_transport
from pyfrp.proto.crypto import StreamDecryptor, StreamEncryptor, derive_key
from pyfrp.proto.snappy import STREAM_IDENTIFIER, SnappyFrameDecoder, SnappyFrameEncoder
from tests.net import test_mux
from tests.net.test_mux import MB, Peer, Run, sha, until

run = test_mux.run  # the same both-loops fixture

KEY = derive_key("tok123")
Codec = Callable[[bytes], bytes]


def pieces(data: bytes, seed: int, max_size: int = 70_000) -> list[bytes]:
    rng = random.Random(seed)
    out, pos = [], 0
    while pos < len(data):
        n = rng.randint(1, max_size)
        out.append(data[pos : pos + n])
        pos += n
    return out


def compressible(n: int) -> bytes:
    rng = random.Random(n)
    words = [b"proxy ", b"work ", b"conn ", b"\x00\x01", os.urandom(7)]
    out = bytearray()
    while len(out) < n:
        out += rng.choice(words)
    return bytes(out[:n])


@contextlib.asynccontextmanager
async def wired() -> AsyncIterator[tuple[asyncio.Transport, Peer, socket.socket]]:
    """A transport with a recording protocol; the test drives the other end as a bare socket."""
    loop = asyncio.get_running_loop()
    a, raw = socket.socketpair()
    raw.setblocking(False)
    peer = Peer()
    transport, _ = await loop.create_connection(lambda: peer, sock=a)
    try:
        yield transport, peer, raw
    finally:
        transport.close()
        raw.close()
        await asyncio.sleep(0)


async def recv_decoded(raw: socket.socket, decode: Codec, n: int) -> bytes:
    loop = asyncio.get_running_loop()
    out = bytearray()
    while len(out) < n:
        chunk = await loop.sock_recv(raw, 65536)
        assert chunk, f"EOF after {len(out)} of {n} plaintext bytes"
        out += decode(chunk)
    return bytes(out)


async def both_ways(
    layer: asyncio.Transport, peer: Peer, raw: socket.socket, encode: Codec, decode: Codec
) -> None:
    """Random data each way in random pieces; both sides must see exactly what was sent."""
    loop = asyncio.get_running_loop()
    up, down = compressible(MB) + os.urandom(MB), os.urandom(MB) + compressible(MB)

    async def send_up() -> None:
        for p in pieces(up, 1):
            await peer.writable.wait()
            layer.write(p)

    async def send_down() -> None:
        for p in pieces(down, 2):
            await loop.sock_sendall(raw, encode(p))

    got_up, _, _ = await asyncio.gather(recv_decoded(raw, decode, len(up)), send_up(), send_down())
    await peer.received(len(down))
    assert sha(got_up) == sha(up)
    assert sha(peer.data) == sha(down)


def test_crypto_layer(run: Run) -> None:
    async def main() -> None:
        async with wired() as (transport, peer, raw):
            layer = insert_layer(transport, CryptoLayer(transport, KEY))
            assert layer.get_protocol() is peer
            assert transport.get_protocol() is layer
            enc, dec = StreamEncryptor(KEY), StreamDecryptor(KEY)
            await both_ways(layer, peer, raw, enc.encrypt, dec.decrypt)

    run(main)


def test_crypto_layer_sends_its_iv_first(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with wired() as (transport, _, raw):
            layer = insert_layer(transport, CryptoLayer(transport, KEY))
            layer.write(b"")  # an empty write sends nothing, not even the IV
            layer.write(b"hello")
            data = await loop.sock_recv(raw, 100)
            assert len(data) == 16 + 5
            assert StreamDecryptor(KEY).decrypt(data) == b"hello"
            assert StreamEncryptor(KEY, iv=data[:16]).encrypt(b"hello") == data

    run(main)


def test_compress_layer(run: Run) -> None:
    async def main() -> None:
        async with wired() as (transport, peer, raw):
            layer = insert_layer(transport, CompressLayer(transport))
            enc, dec = SnappyFrameEncoder(), SnappyFrameDecoder()
            await both_ways(layer, peer, raw, enc.encode, dec.decode)

    run(main)


def test_compression_shrinks_on_the_wire(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with wired() as (transport, _, raw):
            layer = insert_layer(transport, CompressLayer(transport))
            layer.write(b"a" * 60_000)
            data = await loop.sock_recv(raw, 100_000)
            assert data.startswith(STREAM_IDENTIFIER)
            assert len(data) < 6_000
            assert SnappyFrameDecoder().decode(data) == b"a" * 60_000

    run(main)


def test_stacked_in_frp_order(run: Run) -> None:
    """app -> snappy -> AES-CFB -> socket, as frp wraps a work connection with both options."""

    async def main() -> None:
        async with wired() as (transport, peer, raw):
            crypto = insert_layer(transport, CryptoLayer(transport, KEY))
            top = insert_layer(crypto, CompressLayer(crypto))
            enc, dec = StreamEncryptor(KEY), StreamDecryptor(KEY)
            zenc, zdec = SnappyFrameEncoder(), SnappyFrameDecoder()
            await both_ways(
                top,
                peer,
                raw,
                lambda p: enc.encrypt(zenc.encode(p)),
                lambda c: zdec.decode(dec.decrypt(c)),
            )

    run(main)


def test_wrap_work_transport_matches(run: Run) -> None:
    async def main() -> None:
        async with wired() as (transport, peer, raw):
            enc, dec = StreamEncryptor(KEY), StreamDecryptor(KEY)
            zenc, zdec = SnappyFrameEncoder(), SnappyFrameDecoder()
            early = enc.encrypt(zenc.encode(b"read before the wrap|"))
            top, pending = wrap_work_transport(
                transport, early, token="tok123", use_encryption=True, use_compression=True
            )
            assert pending == b"read before the wrap|"
            top.set_protocol(peer)
            await both_ways(
                top,
                peer,
                raw,
                lambda p: enc.encrypt(zenc.encode(p)),
                lambda c: zdec.decode(dec.decrypt(c)),
            )

    run(main)


def test_insert_layer_passes_bytes_already_read(run: Run) -> None:
    """Plaintext, then ciphertext in the same read: the layer decodes what was read before it."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with wired() as (transport, peer, raw):
            enc = StreamEncryptor(KEY)
            await loop.sock_sendall(raw, b"plain|" + enc.encrypt(b"secret one|"))
            await peer.received(6 + 16 + 11)
            already = bytes(peer.data[6:])
            del peer.data[:]
            layer = insert_layer(transport, CryptoLayer(transport, KEY), already)
            assert peer.data == b"secret one|"
            await loop.sock_sendall(raw, enc.encrypt(b"secret two"))
            await peer.received(6 + 16 + 11 + 11 + 10)  # counts what the layer decoded too
            assert peer.data == b"secret one|secret two"
            layer.write(b"reply")
            assert StreamDecryptor(KEY).decrypt(await loop.sock_recv(raw, 100)) == b"reply"

    run(main)


def test_flow_control_passes_through(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with wired() as (transport, peer, raw):
            layer = insert_layer(transport, CryptoLayer(transport, KEY))
            layer.pause_reading()
            assert not transport.is_reading()
            assert not layer.is_reading()
            layer.resume_reading()
            assert transport.is_reading()

            layer.set_write_buffer_limits(high=64 * 1024)
            assert transport.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
            chunk = bytes(256 * 1024)
            while peer.writable.is_set():  # the far end is not reading
                layer.write(chunk)
                await asyncio.sleep(0)
            assert peer.pauses == 1
            assert layer.get_write_buffer_size() == transport.get_write_buffer_size() > 0
            dec = StreamDecryptor(KEY)
            got = 0
            while not peer.writable.is_set():
                got += len(dec.decrypt(await loop.sock_recv(raw, 1 << 20)))
            assert peer.resumes == 1
            assert got > 0

    run(main)


def test_eof_and_close_pass_through(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with wired() as (transport, peer, raw):
            layer = insert_layer(transport, CryptoLayer(transport, KEY))
            assert layer.get_extra_info("socket") is transport.get_extra_info("socket")
            raw.shutdown(socket.SHUT_WR)
            await peer.lost
            assert peer.events == ["eof", "lost"]
            assert layer.is_closing()
            assert await loop.sock_recv(raw, 10) == b""

    run(main)


def test_garbage_under_a_layer_aborts_the_connection(run: Run) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with wired() as (transport, peer, raw):
            insert_layer(transport, CompressLayer(transport))
            await loop.sock_sendall(raw, b"not a snappy stream identifier")
            await peer.lost
            assert peer.data == b""
            assert transport.is_closing()
            with contextlib.suppress(ConnectionResetError):
                assert await loop.sock_recv(raw, 10) == b""

    run(main)


def test_layer_over_a_layer_reports_lower_state(run: Run) -> None:
    async def main() -> None:
        async with wired() as (transport, _, _raw):
            top: Layer = insert_layer(transport, CryptoLayer(transport, KEY))
            top = insert_layer(top, CompressLayer(top))
            assert not top.is_closing()
            top.close()
            await until(transport.is_closing)
            assert top.is_closing()

    run(main)
