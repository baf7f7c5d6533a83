"""The idle power baseline: what it holds, where it is stored, whether a run may subtract it.

A run's net energy per domain is ``gross - idle_power_w * window_s``. A baseline measured on
other hardware (``foreign``), too long ago (``stale``), absent (``missing``) or unreadable
(``invalid``) is reported with the run and never subtracted. Measuring one is ``idle.measure_idle``.

The net figure's bound adds to the gross one what the baseline cannot know of the run's own
window: idle power wanders, the more so over short windows. Each domain's entry holds ``spread``:
the standard deviation of mean idle power over consecutive sub-windows of several lengths
(``windows``: 0.1 s to 60 s), and ``power_uncertainty_w``, the bound on the mean idle power itself.
A run of ``window_s`` adds ``(2 x std at that length + power_uncertainty_w) x window_s``. Files
written before the spread was recorded still load and subtract; their net figures carry no bound.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from controller.meters.system import host_fingerprint

SCHEMA = "joulebench.idle/1"
DEFAULT_MAX_AGE_S = 7 * 24 * 3600.0
#: Energy domains a baseline can hold, and the metric each one is subtracted from.
DOMAINS = {"cpu": "cpu_energy_j", "dram": "dram_energy_j", "gpu": "gpu_energy_j"}
DOMAINS_WALL = {"wall": "wall_energy_j"}
#: How many standard deviations of idle power over the window a net bound allows (95 % for a
#: normal spread).
SPREAD_SIGMAS = 2.0
NO_SPREAD = (
    "the idle baseline records no spread of idle power (measured before joulebench recorded one): "
    "measure it again with `controller idle` for a bound on net energy"
)

Status = Literal["ok", "missing", "stale", "foreign", "invalid"]


def default_baseline_dir() -> Path:
    """``$XDG_CACHE_HOME/joulebench/idle`` (``~/.cache/joulebench/idle`` by default)."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "joulebench" / "idle"


def default_baseline_path(fingerprint_id: str) -> Path:
    """Where the baseline of the host with this fingerprint id is stored by default."""
    return default_baseline_dir() / f"{fingerprint_id}.json"


@dataclass
class IdleBaseline:
    """Idle power per domain. ``domains[d]`` is ``{"available", "reason", "power_w"}`` and, for
    ``gpu``, ``per_device`` (UUID -> W) so a run on a subset of the GPUs subtracts only theirs."""

    fingerprint: dict[str, Any]
    measured_at_unix: float
    duration_s: float
    interval_s: float
    domains: dict[str, dict[str, Any]]
    flags: list[dict[str, Any]] = field(default_factory=list)
    schema: str = SCHEMA

    @property
    def fingerprint_id(self) -> str:
        return str(self.fingerprint.get("id", ""))

    @property
    def measured_at(self) -> str:
        t = datetime.fromtimestamp(self.measured_at_unix, timezone.utc)
        return t.isoformat(timespec="seconds")

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "fingerprint": self.fingerprint,
            "fingerprint_id": self.fingerprint_id,
            "measured_at": self.measured_at,
            "measured_at_unix": self.measured_at_unix,
            "duration_s": self.duration_s,
            "interval_s": self.interval_s,
            "domains": self.domains,
            "flags": self.flags,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IdleBaseline:
        if d.get("schema") != SCHEMA:
            raise ValueError(f"schema {d.get('schema')!r}, expected {SCHEMA!r}")
        return cls(
            fingerprint=dict(d["fingerprint"]),
            measured_at_unix=float(d["measured_at_unix"]),
            duration_s=float(d["duration_s"]),
            interval_s=float(d["interval_s"]),
            domains=dict(d["domains"]),
            flags=list(d.get("flags", [])),
        )

    def spread(
        self, domain: str, window_s: float, gpu_uuids: Sequence[str] | None = None
    ) -> tuple[float, float] | None:
        """(standard deviation of idle power over windows of ``window_s``, bound on the mean idle
        power itself), both W, of a domain (for ``gpu``: summed over ``gpu_uuids``, linearly);
        None when the baseline recorded no spread for it."""
        entry = self.domains.get(domain) or {}
        if domain == "gpu" and gpu_uuids is not None:
            per = entry.get("per_device_spread") or {}
            found = [per.get(u) for u in gpu_uuids]
            if any(f is None for f in found):
                return None
            parts = [(_std_at(f["windows"], window_s), float(f["power_uncertainty_w"])) for f in found if f]
            if any(std is None for std, _ in parts):
                return None
            return sum(std or 0.0 for std, _ in parts), sum(u for _, u in parts)
        spread = entry.get("spread")
        if not spread or entry.get("power_uncertainty_w") is None:
            return None
        std = _std_at(spread.get("windows") or [], window_s)
        return None if std is None else (std, float(entry["power_uncertainty_w"]))

    def power_w(self, domain: str, gpu_uuids: Sequence[str] | None = None) -> tuple[float | None, str | None]:
        """Idle power of a domain (for ``gpu``: summed over ``gpu_uuids``), or None and why."""
        entry = self.domains.get(domain)
        if not entry or not entry.get("available") or entry.get("power_w") is None:
            why = (entry or {}).get("reason") or f"the baseline has no {domain} figure"
            return None, f"idle {domain} power not in the baseline: {why}"
        if domain == "gpu" and gpu_uuids is not None:
            per = entry.get("per_device") or {}
            missing = [u for u in gpu_uuids if per.get(u) is None]
            if missing:
                return None, f"the baseline has no idle power for GPU {', '.join(missing)}"
            return sum(float(per[u]) for u in gpu_uuids), None
        return float(entry["power_w"]), None


@dataclass
class BaselineStatus:
    """A loaded baseline and whether it may be used. Only ``ok`` baselines are subtracted."""

    status: Status
    reason: str | None
    path: Path | None
    baseline: IdleBaseline | None = None
    age_s: float | None = None

    @property
    def usable(self) -> bool:
        return self.status == "ok" and self.baseline is not None

    def to_dict(self) -> dict[str, Any]:
        b = self.baseline
        return {
            "status": self.status,
            "reason": self.reason,
            "path": None if self.path is None else str(self.path),
            "fingerprint_id": None if b is None else b.fingerprint_id,
            "measured_at": None if b is None else b.measured_at,
            "age_s": self.age_s,
            "duration_s": None if b is None else b.duration_s,
            "idle_power_w": None if b is None else {d: e.get("power_w") for d, e in b.domains.items()},
        }


def save_baseline(baseline: IdleBaseline, path: str | os.PathLike[str] | None = None) -> Path:
    """Write the baseline atomically (default: :func:`default_baseline_path`); return the path."""
    p = Path(path) if path is not None else default_baseline_path(baseline.fingerprint_id)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(baseline.to_dict(), f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def load_baseline(
    path: str | os.PathLike[str] | None = None,
    *,
    fingerprint: dict[str, Any] | None = None,
    max_age_s: float = DEFAULT_MAX_AGE_S,
    now: float | None = None,
    nvml: Any | None = None,
) -> BaselineStatus:
    """Load the baseline for this host and say whether it may be used (``status == "ok"``).

    ``fingerprint`` defaults to :func:`host_fingerprint` (``nvml`` is passed to it); ``path`` to
    the default location for that fingerprint; ``now`` (unix seconds) to the current time.
    """
    if fingerprint is None:
        fingerprint = host_fingerprint(nvml)
    fid = str(fingerprint.get("id", ""))
    p = Path(path) if path is not None else default_baseline_path(fid)
    if not p.exists():
        others = sorted(x.stem for x in p.parent.glob("*.json")) if p.parent.is_dir() else []
        extra = f" (baselines present for other hardware: {', '.join(others)})" if others else ""
        return BaselineStatus(
            "missing",
            f"no idle baseline at {p}{extra}; measure one with `controller idle` on an idle host",
            p,
        )
    try:
        baseline = IdleBaseline.from_dict(json.loads(p.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return BaselineStatus("invalid", f"cannot read idle baseline {p}: {exc}; measure it again", p)
    now = time.time() if now is None else now
    age = now - baseline.measured_at_unix
    if baseline.fingerprint_id != fid:
        diff = sorted(
            k
            for k in set(fingerprint) | set(baseline.fingerprint)
            if k not in ("id", "nvml") and fingerprint.get(k) != baseline.fingerprint.get(k)
        )
        return BaselineStatus(
            "foreign",
            f"idle baseline {p} was measured on other hardware (differs in: "
            f"{', '.join(diff) or 'id'}); measure one on this host with `controller idle`",
            p,
            baseline,
            age,
        )
    if age > max_age_s:
        return BaselineStatus(
            "stale",
            f"idle baseline {p} is {age / 86400:.1f} days old (limit {max_age_s / 86400:.1f}); "
            "measure it again with `controller idle`",
            p,
            baseline,
            age,
        )
    return BaselineStatus("ok", None, p, baseline, age)


def _std_at(windows: Sequence[dict[str, Any]], window_s: float) -> float | None:
    """Standard deviation of idle power at ``window_s``: at the longest recorded sub-window no
    longer than it (idle power spreads less over longer windows, so this never understates);
    below the shortest, the shortest's, scaled up as white noise would (x sqrt(shortest / window))."""
    rows = sorted((float(w["window_s"]), float(w["std_power_w"])) for w in windows if w.get("std_power_w") is not None)
    if not rows:
        return None
    fitting = [std for length, std in rows if length <= window_s]
    if fitting:
        return fitting[-1]
    shortest, std = rows[0]
    return std * math.sqrt(shortest / window_s) if window_s > 0 else std


def net_energy(
    gross_j: float | None,
    domain: str,
    window_s: float,
    baseline: BaselineStatus | None,
    gpu_uuids: Sequence[str] | None = None,
    gross_uncertainty_j: float | None = None,
) -> dict[str, Any]:
    """Gross, idle and net energy of one domain over a window, with why net is missing if it is,
    and the net figure's bound (``net_uncertainty_j``: the gross bound, plus the idle power's
    spread over a window this long and the baseline's own bound, times the window)."""
    out: dict[str, Any] = {
        "gross_j": gross_j,
        "idle_power_w": None,
        "idle_j": None,
        "net_j": None,
        "net_reason": None,
        "net_uncertainty_j": None,
        "net_uncertainty_components": None,
        "net_uncertainty_reason": None,
    }
    if gross_j is None:
        out["net_reason"] = "gross energy not measured"
    elif baseline is None:
        out["net_reason"] = "no idle baseline given"
    elif not baseline.usable:
        out["net_reason"] = f"idle baseline {baseline.status}: {baseline.reason}"
    else:
        assert baseline.baseline is not None
        power, why = baseline.baseline.power_w(domain, gpu_uuids)
        if power is None:
            out["net_reason"] = why
        else:
            out["idle_power_w"] = power
            out["idle_j"] = power * window_s
            out["net_j"] = gross_j - power * window_s
            out.update(_net_bound(baseline.baseline, domain, window_s, gpu_uuids, gross_uncertainty_j))
    return out


def _net_bound(
    baseline: IdleBaseline,
    domain: str,
    window_s: float,
    gpu_uuids: Sequence[str] | None,
    gross_uncertainty_j: float | None,
) -> dict[str, Any]:
    if gross_uncertainty_j is None:
        return {"net_uncertainty_reason": "the gross figure has no bound"}
    spread = baseline.spread(domain, window_s, gpu_uuids)
    if spread is None:
        return {"net_uncertainty_reason": NO_SPREAD}
    std_w, estimate_w = spread
    components = {
        "gross": gross_uncertainty_j,
        "idle_power_spread": SPREAD_SIGMAS * std_w * window_s,
        "idle_power_estimate": estimate_w * window_s,
    }
    return {"net_uncertainty_j": sum(components.values()), "net_uncertainty_components": components}
