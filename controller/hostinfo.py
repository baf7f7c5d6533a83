"""What a run record says about the host: CPU, cores, memory, kernel, governor, GPUs."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def ram_bytes() -> int | None:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return None


def os_name() -> str:
    for line in (_read("/etc/os-release") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return platform.platform()


def gpus(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """The host's NVIDIA GPUs (name, UUID, driver) as NVML lists them, or why none are listed."""
    nvml = fingerprint.get("nvml") or {}
    devices = [g | {"driver": fingerprint.get("gpu_driver")} for g in fingerprint.get("gpus", [])]
    reason = None if devices else (nvml.get("reason") or "NVML lists no GPU")
    return {"available": bool(devices), "reason": reason, "devices": devices}


def host(fingerprint: dict[str, Any]) -> dict[str, Any]:
    return {
        "hostname": platform.node(),
        "fingerprint_id": fingerprint.get("id"),
        "cpu_model": fingerprint.get("cpu_model"),
        "logical_cores": os.cpu_count(),
        "ram_bytes": ram_bytes(),
        "kernel": platform.release(),
        "os": os_name(),
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "python": platform.python_version(),
    }


def pid_alive(pid: int) -> bool:
    """Whether a process of this host has this id (one of another user's counts: it exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
