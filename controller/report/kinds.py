"""One definition per report, so that no aggregate mixes two: energies net of idle when every run
that measured energy has an idle-subtracted figure, otherwise gross for all, and the report says why;
the second paper's CPU and RAM usage system-wide, or the run's process tree for all."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from controller.carbon import CarbonFactor
from controller.report.columns import ENERGIES
from controller.report.rows import SYSTEM_WIDE


def apply_usage_definition(rows: list[dict[str, Any]]) -> None:
    """One definition of the paper's CPU (RAM) usage per report: system-wide when every run that
    measured its own usage measured the host's too; else the run's process tree for all, said (a
    median of the two definitions means nothing)."""
    for col, (_, own, _, what, _) in SYSTEM_WIDE.items():
        lacking = [r for r in rows if r.get(own) is not None and r.get(f"{col}_system") is None]
        if not lacking:
            continue
        for r in rows:
            if r.get(f"{col}_system") is None or r.get(own) is None:
                continue
            r[col] = r[own]
            notes = json.loads(r["notes"])
            notes[col] = (
                f"{what} usage of the run's own process tree, like every run of this report ({len(lacking)} have no "
                "system-wide figure, written before joulebench measured it), so that no aggregate mixes the two "
                "definitions"
            )
            r["notes"] = json.dumps(notes)


@dataclass
class EnergyKind:
    """Which energies every aggregate of a report (or of a comparison) uses, and why."""

    kind: str | None  # "net", "gross", or None when no run measured energy
    statement: str
    power_kind: str = "gross"
    carbon: CarbonFactor | None = None  # the estimate's factor, when asked for

    @property
    def label(self) -> str:
        return {"net": "net of idle", "gross": "gross (idle not subtracted)"}.get(self.kind or "", "not measured")


def decide_energy_kind(rows: list[dict[str, Any]]) -> EnergyKind:
    """Net for all when every run that measured energy has net figures, else gross for all."""
    measured = [r for r in rows if any(r[f"{c}_gross"] is not None for c in ENERGIES)]
    if not measured:
        return EnergyKind(None, "No run measured energy.")
    lacking = [r for r in measured if any(r[f"{c}_gross"] is not None and r[f"{c}_net"] is None for c in ENERGIES)]
    with_power = [r for r in measured if r["gpu_power_gross"] is not None]
    power = "net" if not lacking and all(r["gpu_idle_power_w"] is not None for r in with_power) else "gross"
    power_text = (
        " GPU power is net of the GPU's idle power too, as in the first paper."
        if power == "net"
        else " GPU power is the mean of the samples, gross (the first paper subtracted the idle power)."
    )
    if not lacking:
        return EnergyKind(
            "net",
            "Energies are net of idle: the stored idle baseline's power × the window is subtracted per domain "
            "(the first paper subtracts idle power too)." + power_text,
            power,
        )
    # The baseline's status says why in most cases; the record's own reason when the baseline was fine.
    reasons = sorted(
        {
            f"idle baseline {r['baseline_status']}"
            if r["baseline_status"] not in (None, "ok")
            else (r["net_reason"] or "no reason recorded")
            for r in lacking
        }
    )
    mixed = len(lacking) < len(measured)
    return EnergyKind(
        "gross",
        f"Energies are gross (idle not subtracted): {len(lacking)} of {len(measured)} runs have no idle-subtracted "
        f"figure ({'; '.join(reasons)[:300]})"
        + ("; the others are shown gross too, so that no aggregate mixes net and gross." if mixed else ".")
        + power_text,
        power,
    )


def apply_energy_kind(rows: list[dict[str, Any]], kind: EnergyKind) -> None:
    """Set the energy columns (and the per-request/per-token figures) to one kind, with notes."""
    n_lacking = sum(1 for r in rows if any(r[f"{c}_gross"] is not None and r[f"{c}_net"] is None for c in ENERGIES))
    for r in rows:
        notes = json.loads(r["notes"])
        which = "net" if kind.kind == "net" else "gross"
        for col in ENERGIES:
            gross, net = r[f"{col}_gross"], r[f"{col}_net"]
            r[col] = net if kind.kind == "net" else gross
            r[f"{col}_uncertainty"] = r[f"{col}_uncertainty_{which}"]
            if f"{col}_uncertainty_{which}" in notes:
                notes[f"{col}_uncertainty"] = notes[f"{col}_uncertainty_{which}"]
            if kind.kind == "gross" and gross is not None:
                if net is None:
                    notes[col] = (
                        f"gross energy: no idle baseline subtracted (baseline {r['baseline_status'] or 'missing'})"
                    )
                else:
                    notes[col] = (
                        f"gross energy: shown gross like every run of this report ({n_lacking} have no "
                        "idle-subtracted figure), so that no aggregate mixes net and gross"
                    )
        power, idle = r["gpu_power_gross"], r["gpu_idle_power_w"]
        r["gpu_power_w"] = (
            power - idle if kind.power_kind == "net" and power is not None and idle is not None else power
        )
        _steady_energy(r, kind, notes)
        total = r["total_energy"]
        samples = r["samples"] if not r["serving"] else None
        r["energy_per_sample"] = total / samples if total is not None and samples else None
        u = r["total_energy_uncertainty"]
        r["energy_per_sample_uncertainty"] = u / samples if u is not None and samples else None
        for col, count in (("energy_per_request", r["requests_ok"]), ("energy_per_token", r["new_tokens"])):
            r[col] = total / count if r["serving"] and total is not None and count else None
            r[f"{col}_uncertainty"] = u / count if r[col] is not None and u is not None else None
            if r["serving"] and "total_energy" in notes:
                notes[col] = notes["total_energy"]
        carbon = kind.carbon
        r["carbon_g"] = carbon.grams(total) if carbon is not None and total is not None else None
        # The grid factor's own uncertainty is not known: the bound is the energy's, converted.
        r["carbon_g_uncertainty"] = (
            carbon.grams(u) if carbon is not None and total is not None and u is not None else None
        )
        if "total_energy" in notes:
            notes["carbon_g"] = notes["total_energy"]
        for col in ("energy_per_request", "energy_per_token", "carbon_g"):
            if "total_energy_uncertainty" in notes:
                notes[f"{col}_uncertainty"] = notes["total_energy_uncertainty"]
        r["notes"] = json.dumps(notes)


def _steady_energy(r: dict[str, Any], kind: EnergyKind, notes: dict[str, str]) -> None:
    """The steady energy per output token of the report's kind: net for a net report, else gross."""
    gross, net = r.get("energy_per_token_steady_gross"), r.get("energy_per_token_steady_net")
    r["energy_per_token_steady"] = net if kind.kind == "net" else gross
    which = "net" if kind.kind == "net" else "gross"
    r["energy_per_token_steady_uncertainty"] = r.get(f"energy_per_token_steady_uncertainty_{which}")
    if f"energy_per_token_steady_uncertainty_{which}" in notes:
        notes["energy_per_token_steady_uncertainty"] = notes[f"energy_per_token_steady_uncertainty_{which}"]
    if kind.kind == "net" and gross is not None and net is None:
        notes["energy_per_token_steady"] = "measured gross only, and this report shows net energies"
    elif kind.kind == "gross" and gross is not None and "total_energy" in notes:
        notes["energy_per_token_steady"] = notes["total_energy"]
