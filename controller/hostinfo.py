"""What a run record says about the host: CPU, cores, memory, kernel, governor, GPUs."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def cpu_model() -> str | None:
    for line in (_read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or None


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


def gpus() -> dict[str, Any]:
    """The host's NVIDIA GPUs (name, UUID, driver), or why none are listed."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return {
            "available": False,
            "reason": "nvidia-smi not found: no NVIDIA driver on this host",
            "devices": [],
        }
    proc = subprocess.run(
        [smi, "--query-gpu=name,uuid,driver_version", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if proc.returncode != 0:
        return {
            "available": False,
            "reason": f"nvidia-smi failed: {proc.stderr.strip()[:200]}",
            "devices": [],
        }
    devices = []
    for line in proc.stdout.strip().splitlines():
        name, uuid, driver = (part.strip() for part in line.split(","))
        devices.append({"name": name, "uuid": uuid, "driver": driver})
    return {
        "available": bool(devices),
        "reason": None if devices else "no GPU listed",
        "devices": devices,
    }


def host() -> dict[str, Any]:
    return {
        "hostname": platform.node(),
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "ram_bytes": ram_bytes(),
        "kernel": platform.release(),
        "os": os_name(),
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "python": platform.python_version(),
    }
