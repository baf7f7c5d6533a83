"""The summary's lines for a serving load point's phase figures (``phase_figures.py``): prefill,
decode and other, static and active over the window, each request's energy, ML.ENERGY's steady
window; what is unavailable says why."""

from __future__ import annotations

from typing import Any

from controller.serving.request_energy import STATS


def _j(v: float | None, bound: float | None = None) -> str:
    if v is None:
        return "n/a"
    return f"{v:.4g}" + (f" ± {bound:.2g}" if bound is not None else "") + " J"


def _phase_text(m: dict[str, Any], key: str, per: str | None) -> str:
    f = m.get(key) or {}
    text = _j(f.get("value"), f.get("uncertainty_j"))
    if f.get("active_j") is not None:
        text += f", active {_j(f['active_j'], f.get('active_uncertainty_j'))}"
    t = (m.get(per) or {}) if per else {}
    if t.get("available"):
        text += f"; {_j(t['value'], t.get('uncertainty_j'))} per {'prompt' if 'prompt' in str(per) else 'output'} token"
    return text


def phase_lines(m: dict[str, Any]) -> list[str]:
    """The summary's lines for a point's phase figures (what is unavailable says why)."""
    if "prefill_energy_j" not in m:
        return []
    prefill = m["prefill_energy_j"]
    if not prefill.get("available"):
        return [f"phases     unavailable: {str(prefill.get('reason')).split(': ')[0]}"]
    lines = [
        f"prefill    {_phase_text(m, 'prefill_energy_j', 'energy_per_prompt_token_prefill_j')}",
        f"decode     {_phase_text(m, 'decode_energy_j', 'energy_per_output_token_decode_j')}",
        f"other      {_phase_text(m, 'other_energy_j', None)} (no request working: gaps, HTTP, queueing)",
    ]
    static, active = m.get("static_energy_j") or {}, m.get("active_energy_j") or {}
    lines.append(
        f"window     static {_j(static.get('value'), static.get('uncertainty_j'))}, active "
        f"{_j(active.get('value'), active.get('uncertainty_j'))}"
        if static.get("available")
        else f"window     static and active unavailable: {static.get('reason')}"
    )
    if m.get("request_energy_j_mean") is not None:
        u = m.get("request_energy_j_uncertainty") or {}
        stats = [f"{s} {_j(m[f'request_energy_j_{s}'], u.get(s))}" for s in STATS]
        lines.append(f"request    energy {', '.join(stats)}")
    win = m.get("mlenergy_steady_window") or {}
    per = m.get("energy_per_output_token_mlenergy_steady_j") or {}
    lines.append(
        f"ML.ENERGY  steady {win['s']:.3f} s (B = {win['batch']}): "
        + (
            f"{_j(per['value'], per.get('uncertainty_j'))} per output token"
            if per.get("available")
            else f"unavailable: {per.get('reason')}"
        )
        if win.get("available")
        else f"ML.ENERGY  steady window unavailable: {win.get('reason')}"
    )
    return lines
