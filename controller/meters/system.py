"""What can be measured on this host, and its identity for idle baselines.

:func:`check_system` backs ``controller system``: one :class:`Check` per thing that decides whether
(and how well) energy can be measured here, with a hint when it is not ok.
:func:`host_fingerprint` identifies the hardware an idle baseline was measured on.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.meters.cgroup import DEFAULT_CGROUP_ROOT, cgroup_version
from controller.meters.nvml import POWER_SOURCE_INSTANT, NvmlMeter
from controller.meters.powercap import DEFAULT_POWERCAP_ROOT, discover
from controller.meters.rapl import RaplMeter

DEFAULT_CPU_ROOT = "/sys/devices/system/cpu"


def cpu_model(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> str:
    """CPU model name from /proc/cpuinfo (``model name``, or ``Model``/``Hardware`` on ARM)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return platform.processor() or "unknown"
    for key in ("model name", "Model", "Hardware", "cpu model"):
        for line in text.splitlines():
            k, _, v = line.partition(":")
            if k.strip() == key and v.strip():
                return v.strip()
    return platform.processor() or "unknown"


def _ram_total_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def host_fingerprint(nvml: Any | None = None) -> dict[str, Any]:
    """Identity of this host's measurable hardware: CPU model and count, RAM, hostname, GPUs
    (name and UUID) and driver, plus ``id``, a short hash of all of it.

    ``nvml`` is a pynvml-like module (None: import ``pynvml`` if installed). A host without NVML
    has ``gpus: []`` and ``gpu_driver: None``.
    """
    meter = NvmlMeter(nvml=nvml)
    avail = meter.open()
    gpus = [{"name": g.name, "uuid": g.uuid} for g in meter.gpus]
    driver = meter.driver_version
    meter.close()
    fp: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "ram_total_bytes": _ram_total_bytes(),
        "gpus": gpus,
        "gpu_driver": driver,
        "nvml": avail.to_dict(),
    }
    identity = {k: v for k, v in fp.items() if k != "nvml"}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    fp["id"] = digest[:16]
    return fp


@dataclass(frozen=True)
class Check:
    """One line of ``controller system``. ``ok`` is None where the host does not say."""

    name: str
    ok: bool | None
    detail: str
    hint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "hint": self.hint}


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def check_system(
    powercap_root: str | os.PathLike[str] = DEFAULT_POWERCAP_ROOT,
    nvml: Any | None = None,
    *,
    cgroup_root: str | os.PathLike[str] = DEFAULT_CGROUP_ROOT,
    cpu_root: str | os.PathLike[str] = DEFAULT_CPU_ROOT,
) -> list[Check]:
    """Everything that decides what can be measured here: NVML, GPU energy counter and instant
    power support, RAPL zones and permissions, cgroup version, CPU governor and turbo."""
    checks: list[Check] = []

    meter = NvmlMeter(nvml=nvml)
    avail = meter.open()
    if not avail.available:
        checks.append(Check("nvml", False, avail.reason or "unavailable", "GPU energy unavailable"))
    else:
        names = ", ".join(f"{g.name} ({g.uuid})" for g in meter.gpus)
        checks.append(Check("nvml", True, f"driver {meter.driver_version}; {names}"))
        for g in meter.gpus:
            checks.append(
                Check(
                    f"gpu_energy_counter[{g.uuid}]",
                    g.energy_counter.available,
                    "nvmlDeviceGetTotalEnergyConsumption supported"
                    if g.energy_counter.available
                    else (g.energy_counter.reason or "not supported"),
                    None
                    if g.energy_counter.available
                    else "needs a Volta or later GPU; energy will be integrated from power",
                )
            )
            instant = g.power_source == POWER_SOURCE_INSTANT
            checks.append(
                Check(
                    f"gpu_instant_power[{g.uuid}]",
                    instant,
                    f"power from {g.power_source} ({g.power_averaging})",
                    None
                    if instant
                    else "update the driver (NVML_FI_DEV_POWER_INSTANT needs a recent one); "
                    "the 10 ms power timeline is smoothed until then",
                )
            )
    meter.close()

    found = discover(powercap_root)
    listed = ", ".join(f"{z.domain}:{z.socket}" for z in found.zones)
    has_pkg = any(z.domain == "cpu" for z in found.zones)
    checks.append(
        Check(
            "rapl_zones",
            has_pkg,
            f"{listed} under {powercap_root}" if has_pkg else (found.availability.reason or ""),
            None if has_pkg else "CPU/DRAM energy unavailable on this host",
        )
    )
    rapl = RaplMeter(powercap_root)
    ravail = rapl.open()
    if ravail.available:
        checks.append(Check("rapl_permissions", True, "energy_uj readable"))
    elif has_pkg:
        checks.append(
            Check(
                "rapl_permissions",
                False,
                ravail.reason or "unreadable",
                "run the controller as root or make energy_uj readable",
            )
        )
    else:
        checks.append(Check("rapl_permissions", None, "no RAPL zone to read"))
    checks.append(
        Check(
            "rapl_dram",
            rapl.dram.available,
            "DRAM zone present" if rapl.dram.available else (rapl.dram.reason or ""),
        )
    )
    rapl.close()

    ver = cgroup_version(cgroup_root)
    checks.append(
        Check(
            "cgroup_version",
            ver is not None,
            f"cgroup v{ver} at {cgroup_root}" if ver else f"no cgroup filesystem at {cgroup_root}",
            None if ver else "container CPU/RAM cannot be measured",
        )
    )

    croot = Path(cpu_root)
    gov = _read(croot / "cpu0" / "cpufreq" / "scaling_governor")
    if gov is None:
        checks.append(
            Check(
                "cpu_governor",
                None,
                "cpufreq not exposed (VM or no cpufreq driver)",
                "frequency scaling cannot be checked; results may vary with it",
            )
        )
    else:
        checks.append(
            Check(
                "cpu_governor",
                gov == "performance",
                f"scaling_governor={gov}",
                None if gov == "performance" else "for stable timings: `cpupower frequency-set -g performance`",
            )
        )
    no_turbo = _read(croot / "intel_pstate" / "no_turbo")
    boost = _read(croot / "cpufreq" / "boost")
    if no_turbo is not None:
        on = no_turbo == "0"
        checks.append(
            Check(
                "cpu_turbo",
                not on,
                f"intel_pstate/no_turbo={no_turbo} (turbo {'on' if on else 'off'})",
                "turbo makes timings and energy vary run to run: "
                "`echo 1 > /sys/devices/system/cpu/intel_pstate/no_turbo`"
                if on
                else None,
            )
        )
    elif boost is not None:
        on = boost == "1"
        checks.append(
            Check(
                "cpu_turbo",
                not on,
                f"cpufreq/boost={boost} (boost {'on' if on else 'off'})",
                "boost makes timings and energy vary run to run: `echo 0 > /sys/devices/system/cpu/cpufreq/boost`"
                if on
                else None,
            )
        )
    else:
        checks.append(Check("cpu_turbo", None, "neither intel_pstate/no_turbo nor cpufreq/boost exposed"))
    return checks
