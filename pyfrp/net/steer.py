"""Which of a port's SO_REUSEPORT sockets takes a new connection: by the client's address, so
that every connection of one host goes to the same pyfrps worker (``pyfrp.workers``).

An frpc's control connection and, without tcp_mux, each of its work connections are separate
TCP connections to bind_port. The kernel's default spreads them by their whole 4-tuple, so most
work connections land on a worker other than the one holding their client's session and must be
handed over (through a bridge when TLS has been spoken on them, and without the TLS session
ticket, which only the issuing process can read). A classic BPF program attached to the group
(SO_ATTACH_REUSEPORT_CBPF) picks the socket from the source address instead: a client's
connections meet at one worker, and hosts still spread over the workers. Clients behind one
NAT address share a worker."""

from __future__ import annotations

import ctypes
import socket
import struct

SO_ATTACH_REUSEPORT_CBPF = 51  # asm-generic/socket.h

# classic BPF opcodes (linux/filter.h)
_LD_B_ABS = 0x30
_LD_W_ABS = 0x20
_RSH_K = 0x74
_MUL_K = 0x24
_MOD_K = 0x94
_JEQ_K = 0x15
_JA = 0x05
_RET_A = 0x16
_NET = 0xFFF00000  # SKF_NET_OFF: offsets from the network header (the program sees the payload)
_GOLDEN = 0x9E3779B1  # spreads neighbouring addresses (a /24 of clients) over the workers


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("=HBBI", code, jt, jf, k)


def source_program(count: int) -> bytes:
    """A cBPF program returning (a hash of the source address) % ``count``: the IPv4 address,
    or an IPv6 address's last 32 bits."""
    if count < 1:
        raise ValueError("count must be at least 1")
    return b"".join(
        (
            _insn(_LD_B_ABS, 0, 0, _NET + 0),  # A = version and IHL
            _insn(_RSH_K, 0, 0, 4),  # A = IP version
            _insn(_JEQ_K, 0, 2, 6),  # IPv6? else skip the next two
            _insn(_LD_W_ABS, 0, 0, _NET + 20),  # A = last 32 bits of the IPv6 source
            _insn(_JA, 0, 0, 1),
            _insn(_LD_W_ABS, 0, 0, _NET + 12),  # A = IPv4 source
            _insn(_MUL_K, 0, 0, _GOLDEN),
            _insn(_RSH_K, 0, 0, 16),
            _insn(_MOD_K, 0, 0, count),
            _insn(_RET_A, 0, 0, 0),
        )
    )


def steer_by_source(sock: socket.socket, count: int) -> None:
    """Attach ``source_program(count)`` to ``sock``'s reuseport group, whose sockets were bound
    in worker order; raises OSError where the kernel refuses (the default spread then stays)."""
    prog = source_program(count)
    buf = ctypes.create_string_buffer(prog, len(prog))
    # struct sock_fprog: unsigned short len; struct sock_filter *filter (padded to 8 bytes)
    fprog = struct.pack("HL", len(prog) // 8, ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
