"""KCP, the ARQ protocol frp's ``kcp`` transport runs over UDP (xtaci/kcp-go v5, itself a port
of skywind3000's ikcp), as a pure state machine: no sockets, no clock (``now`` is a uint32
millisecond counter the caller passes in), no logging.

Theory of operation. The sender cuts the byte stream into segments of at most ``mss`` bytes
(``send``); ``flush`` moves them from the send queue into the send buffer while the window
(``min(snd_wnd, rmt_wnd)``, and ``cwnd`` unless congestion control is off) has room, numbers them
(``sn``) and packs them, with pending ACKs and window probes, into packets of at most ``mtu``
bytes (``packets``). A segment stays in the send buffer until the peer acknowledges it, either
selectively (an ACK segment naming its ``sn``) or cumulatively (any segment's ``una``); it is
sent again when its RTO expires, or early when ``resend`` later segments were acknowledged
before it (fast retransmit). The receiver buffers segments out of order (``rcv_buf``), moves the
in-order run into ``rcv_queue`` (at most ``rcv_wnd`` segments) and advertises the room left
there as its window; a reader that stops reading therefore closes the window and stops the
sender, which probes (``WASK``) until it reopens (``WINS``).

Segment (24 bytes, little-endian): conv u32, cmd u8, frg u8, wnd u16, ts u32, sn u32, una u32,
len u32, then ``len`` bytes of data. Several segments share one packet.
"""

from __future__ import annotations

import struct

CMD_PUSH = 81
CMD_ACK = 82
CMD_WASK = 83
CMD_WINS = 84

OVERHEAD = 24
RTO_NDL = 30  # minimum RTO in nodelay mode
RTO_MIN = 100
RTO_DEF = 200
RTO_MAX = 60000
ASK_SEND = 1  # we must send WASK
ASK_TELL = 2  # we must send WINS
WND_SND = 32
WND_RCV = 32
MTU_DEF = 1400
INTERVAL = 100
DEADLINK = 20
THRESH_INIT = 2
THRESH_MIN = 2
PROBE_INIT = 7000
PROBE_LIMIT = 120000
SN_OFFSET = 12  # where ``sn`` sits in a segment header

HEADER = struct.Struct("<IBBHIIII")
_pack_into = HEADER.pack_into
_unpack_from = HEADER.unpack_from
_MASK = 0xFFFFFFFF


def _diff(later: int, earlier: int) -> int:
    """``later - earlier`` on the uint32 circle, as a signed 32-bit number."""
    d = (later - earlier) & _MASK
    return d - 0x100000000 if d & 0x80000000 else d


class KcpError(ValueError):
    """A packet that is not KCP for this conversation."""


class Segment:
    __slots__ = ("acked", "data", "fastack", "frg", "resendts", "rto", "sn", "ts", "xmit")

    def __init__(self, data: bytes, frg: int = 0) -> None:
        self.data = data
        self.frg = frg
        self.sn = 0
        self.ts = 0
        self.rto = 0
        self.xmit = 0
        self.resendts = 0
        self.fastack = 0
        self.acked = False


def conv_of(packet: bytes | memoryview) -> int:
    """The conversation id a bare KCP packet (no FEC header) belongs to."""
    return int.from_bytes(packet[:4], "little")


class Kcp:
    """One KCP conversation. Call ``send``/``input``/``flush``; collect ``packets()`` for the
    wire and ``recv()`` for the application."""

    def __init__(self, conv: int, *, stream: bool = True) -> None:
        self.conv = conv
        self.stream = stream
        self.mtu = MTU_DEF
        self.mss = MTU_DEF - OVERHEAD
        self.snd_una = 0
        self.snd_nxt = 0
        self.rcv_nxt = 0
        self.ssthresh = THRESH_INIT
        self.rx_rttvar = 0
        self.rx_srtt = 0
        self.rx_rto = RTO_DEF
        self.rx_minrto = RTO_MIN
        self.snd_wnd = WND_SND
        self.rcv_wnd = WND_RCV
        self.rmt_wnd = WND_RCV
        self.cwnd = 0
        self.incr = 0
        self.probe = 0
        self.interval = INTERVAL
        self.nodelay = 0
        self.ts_probe = 0
        self.probe_wait = 0
        self.dead_link = DEADLINK
        self.fastresend = 0
        self.nocwnd = False
        self.dead = False  # a segment was sent dead_link times without an ACK
        self.retransmits = 0
        self.snd_queue: list[Segment] = []
        self.snd_buf: list[Segment] = []
        self.rcv_queue: list[bytes] = []
        self.rcv_buf: dict[int, bytes] = {}
        self.acklist: list[tuple[int, int]] = []
        self._out: list[bytes] = []

    # -- settings (kcp-go's SetMtu / NoDelay / WndSize)
    def set_mtu(self, mtu: int) -> None:
        if mtu < 50:
            raise ValueError(f"kcp mtu {mtu} too small")
        self.mtu = mtu
        self.mss = mtu - OVERHEAD

    def set_nodelay(self, nodelay: int, interval: int, resend: int, nc: int) -> None:
        self.nodelay = nodelay
        self.rx_minrto = RTO_NDL if nodelay else RTO_MIN
        self.interval = min(max(interval, 10), 5000)
        self.fastresend = resend
        self.nocwnd = bool(nc)

    def set_window(self, snd: int, rcv: int) -> None:
        if snd > 0:
            self.snd_wnd = snd
        if rcv > 0:
            self.rcv_wnd = rcv

    # -- queries
    def wait_snd(self) -> int:
        """Segments not yet acknowledged (queued or in flight)."""
        return len(self.snd_buf) + len(self.snd_queue)

    def can_send(self) -> bool:
        """Whether kcp-go's Write would accept more now (it blocks otherwise)."""
        n = len(self.snd_buf) + len(self.snd_queue)
        return n < self.snd_wnd and n < self.rmt_wnd

    def readable(self) -> bool:
        return bool(self.rcv_queue)

    def packets(self) -> list[bytes]:
        """Packets produced since the last call, each at most ``mtu`` bytes."""
        out, self._out = self._out, []
        return out

    # -- application side
    def send(self, data: bytes | bytearray | memoryview) -> None:
        """Queue bytes for sending (stream mode fills the last queued segment first)."""
        mss = self.mss
        view = memoryview(data)
        queue = self.snd_queue
        if self.stream and queue:
            last = queue[-1]
            room = mss - len(last.data)
            if room > 0 and view:
                last.data += view[:room]
                view = view[room:]
        if not view:
            return
        if self.stream:
            for i in range(0, len(view), mss):
                queue.append(Segment(bytes(view[i : i + mss])))
            return
        count = (len(view) + mss - 1) // mss
        if count > 255:
            raise ValueError("kcp message too long")
        for i in range(count):
            queue.append(Segment(bytes(view[i * mss : (i + 1) * mss]), count - i - 1))

    def recv(self) -> bytes:
        """All in-order bytes received so far (stream mode; b"" when none)."""
        queue = self.rcv_queue
        if not queue:
            return b""
        fast_recover = len(queue) >= self.rcv_wnd
        data = b"".join(queue)
        queue.clear()
        self._move_in_order()
        if fast_recover and len(self.rcv_queue) < self.rcv_wnd:
            self.probe |= ASK_TELL  # tell the peer our window reopened
        return data

    def _move_in_order(self) -> None:
        buf = self.rcv_buf
        queue = self.rcv_queue
        rcv_wnd = self.rcv_wnd
        nxt = self.rcv_nxt
        while nxt in buf and len(queue) < rcv_wnd:
            queue.append(buf.pop(nxt))
            nxt = (nxt + 1) & _MASK
        self.rcv_nxt = nxt

    # -- network side
    def input(self, data: bytes | memoryview, now: int, regular: bool = True) -> bool:
        """Take one packet from the peer; returns whether the window slid (then flush). A
        packet from FEC recovery is not ``regular``: its window and timing are stale."""
        view = memoryview(data)
        size = len(view)
        if size < OVERHEAD:
            raise KcpError("kcp packet too short")
        snd_una_before = self.snd_una
        latest = 0
        got_ack = False
        slid = False
        pos = 0
        conv = self.conv
        while size - pos >= OVERHEAD:
            sconv, cmd, _frg, wnd, ts, sn, una, length = _unpack_from(view, pos)
            if sconv != conv:
                raise KcpError(f"kcp conv {sconv:#x} is not {conv:#x}")
            pos += OVERHEAD
            if size - pos < length:
                raise KcpError("kcp segment truncated")
            if cmd < CMD_PUSH or cmd > CMD_WINS:
                raise KcpError(f"kcp command {cmd} unknown")
            if regular:
                self.rmt_wnd = wnd
            if self._parse_una(una):
                slid = True
            if cmd == CMD_ACK:
                self._parse_ack(sn, ts)
                got_ack = True
                latest = ts
            elif cmd == CMD_PUSH:
                if _diff(sn, self.rcv_nxt + self.rcv_wnd) < 0:
                    self.acklist.append((sn, ts))
                    if _diff(sn, self.rcv_nxt) >= 0 and sn not in self.rcv_buf:
                        self.rcv_buf[sn] = bytes(view[pos : pos + length])
                        if sn == self.rcv_nxt:
                            self._move_in_order()
            elif cmd == CMD_WASK:
                self.probe |= ASK_TELL
            pos += length
        if got_ack and regular:
            rtt = _diff(now, latest)
            if rtt >= 0:
                self._update_ack(rtt)
        if not self.nocwnd and _diff(self.snd_una, snd_una_before) > 0:
            self._grow_cwnd()
        return slid

    def _parse_una(self, una: int) -> bool:
        buf = self.snd_buf
        n = 0
        for seg in buf:
            if _diff(una, seg.sn) > 0:
                n += 1
            else:
                break
        if n:
            del buf[:n]
        self.snd_una = buf[0].sn if buf else self.snd_nxt
        return n > 0

    def _parse_ack(self, sn: int, ts: int) -> None:
        if _diff(sn, self.snd_una) < 0 or _diff(sn, self.snd_nxt) >= 0:
            return
        for seg in self.snd_buf:
            if _diff(sn, seg.sn) < 0:
                break
            if sn == seg.sn:
                seg.acked = True
                seg.data = b""
            elif _diff(seg.ts, ts) <= 0:
                seg.fastack += 1  # a later segment got through before this one

    def _update_ack(self, rtt: int) -> None:
        # RFC 6298, with kcp-go's reduced weight for samples below the expected range.
        if self.rx_srtt == 0:
            self.rx_srtt = rtt
            self.rx_rttvar = rtt >> 1
        else:
            delta = rtt - self.rx_srtt
            self.rx_srtt += delta >> 3
            delta = abs(delta)
            if rtt < self.rx_srtt - self.rx_rttvar:
                self.rx_rttvar += (delta - self.rx_rttvar) >> 5
            else:
                self.rx_rttvar += (delta - self.rx_rttvar) >> 2
        rto = self.rx_srtt + max(self.interval, self.rx_rttvar << 2)
        self.rx_rto = min(max(self.rx_minrto, rto), RTO_MAX)

    def _grow_cwnd(self) -> None:
        if self.cwnd >= self.rmt_wnd:
            return
        mss = self.mss
        if self.cwnd < self.ssthresh:
            self.cwnd += 1
            self.incr += mss
        else:
            self.incr = max(self.incr, mss)
            self.incr += (mss * mss) // self.incr + mss // 16
            if (self.cwnd + 1) * mss <= self.incr:
                self.cwnd = (self.incr + mss - 1) // mss
        if self.cwnd > self.rmt_wnd:
            self.cwnd = self.rmt_wnd
            self.incr = self.rmt_wnd * mss

    def _wnd_unused(self) -> int:
        return max(self.rcv_wnd - len(self.rcv_queue), 0)

    def flush(self, now: int, ack_only: bool = False) -> int:
        """Send what is due: ACKs, window probes, new segments, retransmissions. Returns the
        milliseconds until the next flush is needed (at most ``interval``)."""
        mtu = self.mtu
        out = self._out
        buf = bytearray(mtu)
        used = 0
        wnd = self._wnd_unused()
        una = self.rcv_nxt
        conv = self.conv

        acks = self.acklist
        if acks:
            last = len(acks) - 1
            rcv_nxt = self.rcv_nxt
            for i, (sn, ts) in enumerate(acks):
                # Skip ACKs below rcv_nxt (una covers them), but keep the last one for the RTT.
                if _diff(sn, rcv_nxt) >= 0 or i == last:
                    if used + OVERHEAD > mtu:
                        out.append(bytes(buf[:used]))
                        used = 0
                    _pack_into(buf, used, conv, CMD_ACK, 0, wnd, ts, sn, una, 0)
                    used += OVERHEAD
            acks.clear()
        if ack_only:
            if used:
                out.append(bytes(buf[:used]))
            return self.interval

        if self.rmt_wnd == 0:
            if self.probe_wait == 0:
                self.probe_wait = PROBE_INIT
                self.ts_probe = (now + self.probe_wait) & _MASK
            elif _diff(now, self.ts_probe) >= 0:
                self.probe_wait = min(max(self.probe_wait, PROBE_INIT) * 3 // 2, PROBE_LIMIT)
                self.ts_probe = (now + self.probe_wait) & _MASK
                self.probe |= ASK_SEND
        else:
            self.ts_probe = 0
            self.probe_wait = 0
        for flag, cmd in ((ASK_SEND, CMD_WASK), (ASK_TELL, CMD_WINS)):
            if self.probe & flag:
                if used + OVERHEAD > mtu:
                    out.append(bytes(buf[:used]))
                    used = 0
                _pack_into(buf, used, conv, cmd, 0, wnd, 0, 0, una, 0)
                used += OVERHEAD
        self.probe = 0

        cwnd = min(self.snd_wnd, self.rmt_wnd)
        if not self.nocwnd:
            cwnd = min(self.cwnd, cwnd)
        queue = self.snd_queue
        sndbuf = self.snd_buf
        moved = 0
        limit = (self.snd_una + cwnd) & _MASK
        nxt = self.snd_nxt
        for seg in queue:
            if _diff(nxt, limit) >= 0:
                break
            seg.sn = nxt
            sndbuf.append(seg)
            nxt = (nxt + 1) & _MASK
            moved += 1
        if moved:
            del queue[:moved]
            self.snd_nxt = nxt

        resent = self.fastresend if self.fastresend > 0 else _MASK
        minrto = self.interval
        change = lost = 0
        rx_rto = self.rx_rto
        for seg in sndbuf:
            if seg.acked:
                continue
            if seg.xmit == 0:
                seg.rto = rx_rto
                seg.resendts = (now + rx_rto) & _MASK
            elif seg.fastack >= resent or (seg.fastack > 0 and not moved):
                # fast retransmit, or early retransmit when nothing new is going out
                seg.fastack = 0
                seg.rto = rx_rto
                seg.resendts = (now + rx_rto) & _MASK
                change += 1
            elif _diff(now, seg.resendts) >= 0:
                seg.rto += rx_rto // 2 if self.nodelay else rx_rto
                seg.fastack = 0
                seg.resendts = (now + seg.rto) & _MASK
                lost += 1
            else:
                left = _diff(seg.resendts, now)
                if 0 < left < minrto:
                    minrto = left
                continue
            seg.xmit += 1
            seg.ts = now
            data = seg.data
            need = OVERHEAD + len(data)
            if used + need > mtu:
                out.append(bytes(buf[:used]))
                used = 0
            _pack_into(buf, used, conv, CMD_PUSH, seg.frg, wnd, now, seg.sn, una, len(data))
            used += OVERHEAD
            buf[used : used + len(data)] = data
            used += len(data)
            if seg.xmit >= self.dead_link:
                self.dead = True
            left = _diff(seg.resendts, now)
            if 0 < left < minrto:
                minrto = left
        if used:
            out.append(bytes(buf[:used]))
        self.retransmits += change + lost

        if not self.nocwnd:
            if change:
                inflight = (self.snd_nxt - self.snd_una) & _MASK
                self.ssthresh = max(inflight // 2, THRESH_MIN)
                self.cwnd = (self.ssthresh + resent) & _MASK  # kcp-go's uint32 sum
                self.incr = self.cwnd * self.mss
            if lost:
                self.ssthresh = max(cwnd // 2, THRESH_MIN)
                self.cwnd = 1
                self.incr = self.mss
            if self.cwnd < 1:
                self.cwnd = 1
                self.incr = self.mss
        return minrto
