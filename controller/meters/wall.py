"""Optional wall-socket meter read over HTTP. Pluggable protocol; NETIO JSON API implemented.

NETIO (PowerBOX, PowerPDU, 4All, PowerCable REST...) serves ``GET <url>/netio.json`` once its
JSON API is enabled (web UI: M2M API Protocols > JSON API)::

    {"Agent": {"Model": "...", "JSONVer": "2.1", ...},
     "GlobalMeasure": {"Voltage": 230.1, "Frequency": 50.0, "TotalCurrent": 1250,
                       "OverallPowerFactor": 0.97, "TotalLoad": 281, "TotalEnergy": 4521, ...},
     "Outputs": [{"ID": 1, "Name": "server", "State": 1, "Action": 6, "Delay": 5000,
                  "Current": 1220, "PowerFactor": 0.97, "Load": 275, "Energy": 4388}, ...]}

``Load``/``TotalLoad`` are watts, ``Energy``/``TotalEnergy`` watt-hours, ``Current`` milliamps.
Devices refresh these about once a second, so the meter polls at 1 s by default and the window
energy is the integral of the load; the Wh counter (3600 J resolution) is kept as a cross-check.
The load a poll returns is the device's figure from its last refresh, up to ``refresh_s`` old and
averaged over about as long, so it lags the power by up to 1.5 refresh periods: the bound moves
that much of the power's swing across each edge (``window.integrate_power``), plus what sampling
once a second cannot see between polls.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from controller.meters.base import NAN, Availability, MeterSummary, Metric, Trace
from controller.meters.uncertainty import SAMPLED_METHOD, bound_fields
from controller.meters.window import (
    counter_delta,
    integrate_power,
    sampling_interval_s,
    short_window_flag,
    window_values,
)

#: What the wall meter reports: metric name -> unit.
WALL_UNITS = {"wall_energy_j": "J", "wall_power_w": "W"}


@dataclass(frozen=True)
class WallReading:
    """One reading of a wall meter: power now and, if the device has one, its energy counter."""

    power_w: float
    energy_j: float | None


class WallProtocolError(ValueError):
    """The device answered, but not with what the protocol expects (wrong output, no metering)."""


class WallProtocol(Protocol):
    """How to ask one kind of device for a reading."""

    name: str

    def request_url(self, base_url: str) -> str: ...

    def parse(self, payload: bytes, output_id: int | None) -> WallReading: ...


class NetioJson:
    """NETIO JSON API (``netio.json``); ``output_id=None`` reads the device total."""

    name = "netio"

    def request_url(self, base_url: str) -> str:
        base = base_url.rstrip("/")
        return base if base.endswith("netio.json") else base + "/netio.json"

    def parse(self, payload: bytes, output_id: int | None) -> WallReading:
        try:
            doc = json.loads(payload)
        except ValueError as exc:
            raise WallProtocolError(f"not JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise WallProtocolError("netio.json is not a JSON object")
        if output_id is None:
            gm = doc.get("GlobalMeasure")
            if not isinstance(gm, dict) or gm.get("TotalLoad") is None:
                raise WallProtocolError(
                    "netio.json has no GlobalMeasure.TotalLoad: this model does not meter the "
                    "whole device; configure the output id the host is plugged into"
                )
            energy = gm.get("TotalEnergy")
            return WallReading(float(gm["TotalLoad"]), None if energy is None else float(energy) * 3600.0)
        outputs = doc.get("Outputs")
        if not isinstance(outputs, list):
            raise WallProtocolError("netio.json has no Outputs list")
        for out in outputs:
            if isinstance(out, dict) and out.get("ID") == output_id:
                if out.get("Load") is None:
                    raise WallProtocolError(
                        f"output {output_id} reports no Load: it does not meter power on this "
                        "model (only some outputs of some NETIO devices measure)"
                    )
                energy = out.get("Energy")
                return WallReading(float(out["Load"]), None if energy is None else float(energy) * 3600.0)
        ids = [o.get("ID") for o in outputs if isinstance(o, dict)]
        raise WallProtocolError(f"output {output_id} not found; the device has outputs {ids}")


PROTOCOLS: dict[str, WallProtocol] = {"netio": NetioJson()}


class WallMeter:
    """Polls a wall-socket meter over HTTP (bounded timeouts; urllib only)."""

    name = "wall"
    units = WALL_UNITS

    def __init__(
        self,
        url: str,
        *,
        output_id: int | None = None,
        protocol: str | WallProtocol = "netio",
        timeout_s: float = 2.0,
        interval_s: float = 1.0,
        auth: tuple[str, str] | None = None,
        refresh_s: float = 1.0,
    ) -> None:
        if isinstance(protocol, str):
            if protocol not in PROTOCOLS:
                raise ValueError(f"unknown wall meter protocol {protocol!r}; known: {sorted(PROTOCOLS)}")
            protocol = PROTOCOLS[protocol]
        self.protocol: WallProtocol = protocol
        self.url = url
        self.request_url = protocol.request_url(url)
        self.output_id = output_id
        self.timeout_s = timeout_s
        self.interval_s: float | None = interval_s
        self.refresh_s = refresh_s  # how often the device recomputes its load (NETIO: about 1 s)
        self.resolution_w = 1.0  # NETIO reports whole watts
        self.fields: tuple[str, ...] = ("power_w", "energy_counter_j")
        self.availability = Availability.no("not opened")
        self._headers: dict[str, str] = {}
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        self.has_counter = False

    def fetch(self) -> WallReading:
        """One HTTP GET and parse; raises OSError/URLError or WallProtocolError."""
        req = urllib.request.Request(self.request_url, headers=self._headers)
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310
            payload = resp.read(1 << 20)
        return self.protocol.parse(payload, self.output_id)

    def open(self) -> Availability:
        what = f"{self.protocol.name} meter at {self.request_url}"
        try:
            first = self.fetch()
        except urllib.error.HTTPError as exc:
            hint = (
                "it needs credentials (auth=(user, password))"
                if exc.code in (401, 403)
                else "is its JSON API enabled (M2M API Protocols > JSON API)?"
            )
            self.availability = Availability.no(f"{what} answered HTTP {exc.code}: {hint}")
            return self.availability
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            self.availability = Availability.no(
                f"cannot reach {what} within {self.timeout_s} s ({reason}); check the URL, the "
                "network, and that the JSON API is enabled"
            )
            return self.availability
        except WallProtocolError as exc:
            self.availability = Availability.no(f"{what}: {exc}")
            return self.availability
        self.has_counter = first.energy_j is not None
        self.availability = Availability.ok()
        return self.availability

    def read(self) -> Sequence[float]:
        try:
            r = self.fetch()
        except (OSError, WallProtocolError):
            return (NAN, NAN)
        return (r.power_w, NAN if r.energy_j is None else r.energy_j)

    def close(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {
            **self.availability.to_dict(),
            "source": f"{self.protocol.name} {self.request_url}",
            "output_id": self.output_id,
            "interval_s": self.interval_s,
            "device_refresh_s": self.refresh_s,
        }

    def source(self) -> str:
        where = f" output {self.output_id}" if self.output_id is not None else " total"
        return f"{self.protocol.name} {self.request_url}{where}"

    def unavailable(self) -> MeterSummary:
        return MeterSummary.unavailable(self.units, self.availability.reason or "not opened", "wall")

    def summarize(self, trace: Trace, t0: int, t1: int) -> MeterSummary:
        src = self.source()
        out: dict[str, Metric] = {}
        # A poll returns the mean over the device's last refresh period, taken up to a period
        # before: its middle lags by up to 1.5 periods.
        integ = integrate_power(trace, "power_w", t0, t1, 1.5 * self.refresh_s, self.resolution_w)
        extra: dict[str, Any] = {
            "scope": "everything on the metered socket",
            "method": f"integrated load (device refreshes about every {self.refresh_s:g} s)",
        }
        if self.has_counter:
            c = counter_delta(trace, "energy_counter_j", t0, t1)
            extra["device_counter_j"] = c.value
            extra["device_counter_resolution_j"] = 3600.0
            if c.faults:
                extra["device_counter_reason"] = c.reason
        if integ.value is None:
            out["wall_energy_j"] = Metric.unavailable("wall_energy_j", "J", integ.reason or "no samples", src, **extra)
        else:
            extra.update(bound_fields(integ.value, integ.components, SAMPLED_METHOD))
            out["wall_energy_j"] = Metric("wall_energy_j", integ.value, "J", src, extra=extra)
        vals = window_values(trace, "power_w", t0, t1)
        window_s = (t1 - t0) / 1e9
        if integ.value is not None and t1 > t0:
            out["wall_power_w"] = Metric(
                "wall_power_w",
                integ.value / window_s,
                "W",
                src,
                extra={"stat": "mean over the window", "samples_in_window": len(vals)},
            )
        else:
            out["wall_power_w"] = Metric.unavailable("wall_power_w", "W", integ.reason or "empty window", src)
        short = short_window_flag(
            self.name, "wall_energy_j", window_s, sampling_interval_s(trace, t0, t1), extra.get("uncertainty_rel")
        )
        return MeterSummary(out, [short] if short and integ.value is not None else [])
