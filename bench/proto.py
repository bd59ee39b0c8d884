"""Wire format of the bulk traffic and the windowed sender shared by every implementation.

Data packet (client -> sink): 20-byte header + padding, total = payload size.
Ack (sink -> client): 20 bytes.  Both start with 0x01 0x00 so that they look like a
uTP ST_DATA packet: pyipv8 exits only let "BitTorrent-like" datagrams out/in.
"""
import struct
import time

MAGIC = b"\x01\x00"
HDR = struct.Struct("!2sBxQQ")  # magic, kind, seq (data) / highest seq (ack), 0 / count
ACK = HDR
DATA_KIND = 0
ACK_KIND = 1


ACK_EVERY = 16


class SinkCounter:
    """The acking sink's bookkeeping, shared by the UDP sink and the hidden-service sinks.

    Counts data packets and bytes and acks the highest sequence number seen every
    ``ACK_EVERY`` packets and on ``tick()``: ``send_ack(ack, reply_to)`` does the sending,
    where ``reply_to`` is whatever the caller passed with the last data packet.
    """

    def __init__(self, send_ack):
        self.send_ack = send_ack
        self.reset()

    def reset(self):
        self.packets = self.bytes = self.unacked = 0
        self.hi = -1
        self.reply_to = None
        self.t0 = time.monotonic()
        return True

    def received(self, data, reply_to):
        if len(data) < HDR.size or data[:2] != MAGIC or data[2] != DATA_KIND:
            return
        self.packets += 1
        self.bytes += len(data)
        seq = HDR.unpack_from(data)[2]
        if seq > self.hi:
            self.hi = seq
        self.reply_to = reply_to
        self.unacked += 1
        if self.unacked >= ACK_EVERY:
            self.ack()

    def ack(self):
        self.unacked = 0
        self.send_ack(ACK.pack(MAGIC, ACK_KIND, self.hi, self.packets), self.reply_to)

    def tick(self):
        if self.unacked and self.reply_to is not None:
            self.ack()

    def stats(self):
        return {"packets": self.packets, "bytes": self.bytes, "elapsed": time.monotonic() - self.t0}


def make_packet_factory(size):
    pad = bytes(max(0, size - HDR.size))
    pack = HDR.pack

    def make(seq):
        return pack(MAGIC, DATA_KIND, seq, 0) + pad
    return make


class WindowedSender:
    """Sends numbered packets with at most ``window`` unacknowledged ones in flight.

    The sink acks the highest sequence number seen (every few packets and on a short timer).
    Packets below an acked sequence number are either delivered or lost; nothing is resent
    (this measures datagram goodput).  If no ack arrives for ``stall`` seconds the in-flight
    packets are written off, so losses cannot deadlock the sender.
    """

    def __init__(self, send, size, window=128, stall=0.05):
        self.send = send
        self.make = make_packet_factory(size)
        self.window = window
        self.stall = stall
        self.seq = 0
        self.acked = 0
        self.acks = 0
        self.stalls = 0
        self.running = False
        self.last_ack = time.monotonic()

    def start(self):
        self.running = True
        self.last_ack = time.monotonic()
        self.pump()

    def stop(self):
        self.running = False

    def pump(self):
        if not self.running:
            return
        limit = self.acked + self.window
        send = self.send
        make = self.make
        seq = self.seq
        while seq < limit:
            send(make(seq))
            seq += 1
        self.seq = seq

    def on_ack(self, data):
        if len(data) < ACK.size or data[:2] != MAGIC:
            return
        _, kind, hi, _ = ACK.unpack_from(data)
        if kind != ACK_KIND:
            return
        self.acks += 1
        # hi >= seq: an ack for an earlier flow (the sink's counters outlive a run): ignore it
        if self.acked <= hi < self.seq:
            self.acked = hi + 1
            self.last_ack = time.monotonic()
            self.pump()

    def tick(self):
        """Call periodically (every ~10 ms)."""
        if self.running and time.monotonic() - self.last_ack > self.stall:
            self.stalls += 1
            self.acked = self.seq
            self.last_ack = time.monotonic()
            self.pump()

    def summary(self):
        return {"sent": self.seq, "acks": self.acks, "stalls": self.stalls}
