"""Carbon as a derived estimate: energy × grid carbon intensity × PUE, in gCO2e.

Energy stays the primary figure; this column is named as an estimate wherever it appears, and says
where its factor comes from. The factor is given (``--grid-intensity G`` in gCO2e/kWh) or read from
the bundled table of annual country averages (``--country FRA``, ``grid_intensity.csv``: its source
and years are in its header). Nothing is fetched at run time.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from controller.errors import UserError

TABLE = Path(__file__).with_name("grid_intensity.csv")
J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class Country:
    iso3: str
    name: str
    year: int
    g_per_kwh: float


@dataclass(frozen=True)
class CarbonFactor:
    g_per_kwh: float
    pue: float
    origin: str  # where the intensity comes from, for every output

    def grams(self, joules: float) -> float:
        return joules / J_PER_KWH * self.g_per_kwh * self.pue

    @property
    def statement(self) -> str:
        return (
            f"Carbon is an estimate, not a measurement: energy × {self.g_per_kwh:g} gCO2e/kWh ({self.origin}) "
            f"× PUE {self.pue:g}; energy stays the primary figure."
        )

    def to_dict(self) -> dict[str, object]:
        return {"g_co2e_per_kwh": self.g_per_kwh, "pue": self.pue, "origin": self.origin}


@cache
def source() -> str:
    """The table's own statement of its source and years (its header comment, one line)."""
    lines = [line[1:].strip() for line in TABLE.read_text().splitlines() if line.startswith("#")]
    return " ".join(lines[1:3]).removeprefix("Source: ").removesuffix(", copied unchanged.")


@cache
def countries() -> dict[str, Country]:
    rows = [line for line in TABLE.read_text().splitlines() if line and not line.startswith("#")]
    out = {}
    for r in csv.DictReader(rows):
        c = Country(r["iso3"], r["country"], int(r["year"]), float(r["g_co2e_per_kwh"]))
        out[c.iso3] = c
    return out


def lookup(text: str) -> Country:
    """A country by ISO 3166-1 alpha-3 code (FRA) or by name (France), case-insensitive."""
    table = countries()
    key = text.strip().upper()
    if key in table:
        return table[key]
    by_name = {c.name.upper(): c for c in table.values()}
    if key in by_name:
        return by_name[key]
    near = sorted(c.iso3 for c in table.values() if c.iso3.startswith(key[:1]) or c.name.upper().startswith(key[:3]))
    hint = f"; codes starting alike: {', '.join(near[:12])}" if near else ""
    raise UserError(
        f"--country {text!r}: not in the bundled table of {len(table)} countries; give an ISO 3166-1 alpha-3 code "
        f"(FRA, DEU, USA) or a country name{hint}, or give the factor with --grid-intensity G (gCO2e/kWh)"
    )


def _number(flag: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{flag} {text!r}: not a number") from None
    if not math.isfinite(value):
        raise UserError(f"{flag} {text!r}: give a finite number")
    return value


def carbon_factor(grid_intensity: str | None, country: str | None, pue: str | None) -> CarbonFactor | None:
    """The factor the user asked for, or None when they asked for no carbon estimate."""
    if grid_intensity is not None and country is not None:
        raise UserError("--grid-intensity and --country both give the carbon intensity: give one of them")
    if grid_intensity is None and country is None:
        if pue is not None:
            raise UserError("--pue scales the carbon estimate: give --grid-intensity G or --country ISO with it")
        return None
    factor = 1.0 if pue is None else _number("--pue", pue)
    if factor < 1.0:
        raise UserError(f"--pue {pue}: a PUE is at least 1.0 (facility energy / IT energy); 1.0 counts IT alone")
    if grid_intensity is not None:
        g = _number("--grid-intensity", grid_intensity)
        if g <= 0:
            raise UserError(
                f"--grid-intensity {grid_intensity}: give the grid's carbon intensity in gCO2e/kWh, above 0"
            )
        return CarbonFactor(g, factor, "given with --grid-intensity")
    assert country is not None
    c = lookup(country)
    return CarbonFactor(c.g_per_kwh, factor, f"{c.name} ({c.iso3}), annual average for {c.year}; source: {source()}")
