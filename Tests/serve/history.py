# SPDX-License-Identifier: Apache-2.0
"""A history of overlapping requests on many connections, and what a read may return.

The unit is a 4 KiB sector. Every write fills each sector it covers with bytes that name the
write and the sector (`sector_bytes`), so a read tells which write it sees; a zero or a trim
(of whole blocks) leaves zeros. Requests in flight at once on different connections may land
in either order, so a read of sector x, sent at `sent` and answered at `done`, may return the
result of any operation w on x such that
  - w was sent before the read was answered (nothing from the future), and
  - no operation w2 on x was sent after w was acknowledged and acknowledged before the read
    was sent (w2 would have replaced w for certain: reading w is a stale read, the bug of the
    seed's kernel target).
Time is each client thread's monotonic clock around the blocking call: an operation's real
interval lies inside its [sent, done], so this check never rejects a correct server.
"""
import random
import struct
import threading
import time

SECTOR = 4096
ZERO = b'\0' * SECTOR


def sector_bytes(op, idx):
    """What write `op` puts in sector `idx`: its name, then a body that compresses well for
    some writes and not at all for others (raw and compressed blocks both take part)."""
    head = struct.pack('<QQ', op, idx)
    if op % 3 == 0:
        body = random.Random(op * 1000003 + idx).randbytes(SECTOR - len(head))
    else:
        body = bytes([op % 251, idx % 251]) * ((SECTOR - len(head)) // 2)
    return head + body


class History:
    """What happened to each sector: [sent, done, op] of every write, zero and trim (op None
    for zeros; done infinite while in flight); the initial zeros are an op done before all."""

    def __init__(self, sectors):
        self.ops = {x: [[-1.0, -1.0, None]] for x in range(sectors)}
        self.lock = threading.Lock()
        self.next_op = 1
        self.errors = []

    def begin(self, first, count, zeros=False):
        """A write (or zero/trim) of sectors [first, first+count) about to be sent: its op
        number (None for zeros) and its record, for `end`."""
        with self.lock:
            op = None if zeros else self.next_op
            self.next_op += 1
            entry = [now(), float('inf'), op]
            for x in range(first, first + count):
                self.ops[x].append(entry)
            return op, entry

    def end(self, entry):
        with self.lock:
            entry[1] = now()

    def allowed(self, x, sent, done):
        """The ops whose result a read of sector x over [sent, done] may see: those sent before
        it was done that no op done before it was sent replaced for certain (sent after they
        were done)."""
        with self.lock:
            ops = [tuple(e) for e in self.ops[x]]
        newest_start = max((s for s, d, _ in ops if d < sent), default=-1.0)
        return [op for s, d, op in ops if s < done and not d < newest_start]

    def check_read(self, first, data, sent, done):
        """Checks each sector of a read of `data` from sector `first`; errors are kept."""
        for i in range(len(data) // SECTOR):
            x = first + i
            got = data[i * SECTOR:(i + 1) * SECTOR]
            allowed = self.allowed(x, sent, done)
            if got == ZERO:
                seen = None
            else:
                op, idx = struct.unpack('<QQ', got[:16])
                if idx != x or got != sector_bytes(op, idx):
                    self.errors.append('sector %d: bytes of no write (torn or misplaced: names op %d sector %d)'
                                       % (x, op, idx))
                    continue
                seen = op
            if seen not in allowed:
                self.errors.append('sector %d: read %s, allowed only %s (read sent %.6f done %.6f)'
                                   % (x, 'zeros' if seen is None else 'op %d' % seen, allowed[-4:], sent, done))


def now():
    return time.monotonic()
