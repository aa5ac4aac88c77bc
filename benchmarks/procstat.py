"""What a server process tree used, read from /proc (Linux): CPU, peak RSS, bytes written.

- CPU: utime + stime of /proc/PID/stat, in clock ticks (proc(5)).
- Peak RSS: VmHWM of /proc/PID/status, the most resident memory the process ever held.
- Disk: write_bytes of /proc/PID/io, the bytes the process caused to be sent to the storage
  layer (dirtied page-cache pages count when dirtied); cancelled_write_bytes are pages
  dirtied and then dropped before writeback (a temp file deleted in time).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float
    peak_rss_bytes: int
    write_bytes: int
    cancelled_write_bytes: int
    processes: int

    def minus(self, earlier: Usage) -> Usage:
        """Counters since `earlier`; the peak RSS stays the peak (it cannot be reset)."""
        return Usage(self.cpu_seconds - earlier.cpu_seconds, self.peak_rss_bytes,
                     self.write_bytes - earlier.write_bytes,
                     self.cancelled_write_bytes - earlier.cancelled_write_bytes, self.processes)


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants that are alive now."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, []))
    return found


def usage_of(pids: list[int]) -> Usage:
    cpu = 0.0
    peak = written = cancelled = alive = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue  # gone meanwhile
        alive += 1
        # After the ")" of comm: field 3 (state) is index 0, so utime (14) and stime (15)
        # are at 11 and 12.
        cpu += (int(fields[11]) + int(fields[12])) / _TICKS
        written += int(io["write_bytes"])
        cancelled += int(io["cancelled_write_bytes"])
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak += int(line.split()[1]) * 1024
    return Usage(cpu, peak, written, cancelled, alive)


def tree_usage(root: int) -> Usage:
    return usage_of(process_tree(root))


def reap_with_usage(pid: int) -> tuple[int, Usage]:
    """Wait for a child to exit, read its /proc counters while it is a zombie, then reap it.

    `waitid(WNOWAIT)` leaves the zombie in place, whose stat and io still hold its totals;
    its memory is gone by then, so the peak RSS comes from wait4's rusage (KiB on Linux).
    """
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    _, status, rusage = os.wait4(pid, 0)
    usage = Usage((int(fields[11]) + int(fields[12])) / _TICKS, rusage.ru_maxrss * 1024,
                  int(io["write_bytes"]), int(io["cancelled_write_bytes"]), 1)
    return os.waitstatus_to_exitcode(status), usage
