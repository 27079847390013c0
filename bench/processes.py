"""What a system under measurement costs: CPU time and peak memory of its whole process tree."""

from __future__ import annotations

from pathlib import Path

import psutil


def process_tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def peak_rss_bytes(processes: list[psutil.Process]) -> int:
    """Sum of the processes' high-water resident sizes (VmHWM); forked children count shared pages again."""
    total = 0
    for process in processes:
        status = Path(f"/proc/{process.pid}/status")
        try:
            lines = status.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) * 1024
    return total
