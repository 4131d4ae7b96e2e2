"""`stats`: CPU, memory, network, block I/O and task counts of running containers, from /proc.

Containers have no cgroup of their own yet, so the numbers are sums over
the processes in each container's PID namespace: CPU time from
/proc/PID/stat, resident memory from /proc/PID/statm, block I/O from
/proc/PID/io and tasks from /proc/PID/status. The memory limit is the
host's MemTotal. Network counters come from /proc/PID/net/dev of the
container's init, without `lo`; a container on the host's network shows
0B, as in Docker.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from layerlab.engine import procfs
from layerlab.engine.humanize import human_size

STATS_HEADERS = {
    "Container": "CONTAINER", "ID": "CONTAINER ID", "Name": "NAME", "CPUPerc": "CPU %",
    "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O",
    "PIDs": "PIDS",
}
STATS_TABLE = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"

# CPU usage is the CPU time used over this sampling interval, as Docker
# compares two samples; it is an average over the interval.
SAMPLE_SECONDS = 0.5

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_BINARY_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]


@dataclass
class Sample:
    cpu_ticks: int = 0
    memory: int = 0
    read_bytes: int = 0
    write_bytes: int = 0
    tasks: int = 0
    net_rx: int = 0
    net_tx: int = 0


def binary_size(size: float) -> str:
    """Format bytes as go-units' BytesSize does: `1.465MiB`, 4 significant digits."""
    unit = 0
    while size >= 1024 and unit < len(_BINARY_UNITS) - 1:
        size /= 1024
        unit += 1
    return f"{size:.4g}{_BINARY_UNITS[unit]}"


def sample(record) -> Sample:
    """Read the counters of every process in the container's PID namespace."""
    result = Sample()
    for pid in procfs.namespace_members(record.state.pid):
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            result.cpu_ticks += int(fields[11]) + int(fields[12])  # utime and stime
            with open(f"/proc/{pid}/statm") as handle:
                result.memory += int(handle.read().split()[1]) * _PAGE_SIZE
            with open(f"/proc/{pid}/status") as handle:
                for line in handle:
                    if line.startswith("Threads:"):
                        result.tasks += int(line.split()[1])
            with open(f"/proc/{pid}/io") as handle:
                for line in handle:
                    key, _, value = line.partition(":")
                    if key == "read_bytes":
                        result.read_bytes += int(value)
                    elif key == "write_bytes":
                        result.write_bytes += int(value)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    if record.network != "host":
        result.net_rx, result.net_tx = _network_bytes(record.state.pid)
    return result


def _network_bytes(pid: int) -> tuple[int, int]:
    received = sent = 0
    try:
        with open(f"/proc/{pid}/net/dev") as handle:
            lines = handle.readlines()[2:]
    except OSError:
        return 0, 0
    for line in lines:
        name, _, counters = line.partition(":")
        if name.strip() == "lo":
            continue
        fields = counters.split()
        received += int(fields[0])
        sent += int(fields[8])
    return received, sent


def memory_limit() -> int:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def stats_rows(records, *, no_trunc: bool = False) -> list[dict]:
    """Sample the running containers in `records` twice, SAMPLE_SECONDS apart, and return `stats` rows."""
    running = [record for record in records if record.state.status == "running"]
    first = {record.id: sample(record) for record in running}
    started = time.monotonic()
    if running:
        time.sleep(SAMPLE_SECONDS)
    elapsed = time.monotonic() - started
    limit = memory_limit()

    rows = []
    for record in records:
        row_limit = limit
        if record.id in first:
            now = sample(record)
            cpu_seconds = (now.cpu_ticks - first[record.id].cpu_ticks) / _CLOCK_TICKS
            cpu = 100 * cpu_seconds / elapsed if elapsed > 0 else 0.0
        else:
            now = Sample()
            cpu = 0.0
            row_limit = 0
        rows.append({
            "Container": record.name,
            "ID": record.id if no_trunc else record.id[:12],
            "Name": record.name,
            "CPUPerc": f"{cpu:.2f}%",
            "MemUsage": f"{binary_size(now.memory)} / {binary_size(row_limit)}",
            "MemPerc": f"{100 * now.memory / row_limit if row_limit else 0:.2f}%",
            "NetIO": f"{human_size(now.net_rx)} / {human_size(now.net_tx)}",
            "BlockIO": f"{human_size(now.read_bytes)} / {human_size(now.write_bytes)}",
            "PIDs": str(now.tasks),
        })
    return rows
