"""The NETIO wall meter against a real HTTP server on 127.0.0.1 serving netio.json payloads."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from controller.meters.session import MeterSession
from controller.meters.wall import WallMeter


def netio_payload(load_w: int, energy_wh: int, total_w: int = 300) -> dict[str, Any]:
    """The documented shape of a NETIO netio.json (JSON API 2.x), as a PowerBOX 4Kx sends it."""
    return {
        "Agent": {
            "Model": "PowerBOX 4Kx",
            "Version": "3.4.0",
            "JSONVer": "2.1",
            "DeviceName": "bench-pdu",
            "VendorID": 0,
            "OemID": 0,
            "SerialNumber": "24:A4:2C:39:11:5A",
            "Uptime": 490866,
            "Time": "2024-05-02T10:44:28+01:00",
            "NumOutputs": 4,
        },
        "GlobalMeasure": {
            "Voltage": 231.4,
            "Frequency": 50.0,
            "TotalCurrent": 1350,
            "OverallPowerFactor": 0.96,
            "TotalLoad": total_w,
            "TotalEnergy": 91234,
            "EnergyStart": "2024-01-19T13:30:26+00:00",
        },
        "Outputs": [
            {
                "ID": 1,
                "Name": "bench-host",
                "State": 1,
                "Action": 6,
                "Delay": 5000,
                "Current": 1100,
                "PowerFactor": 0.97,
                "Load": load_w,
                "Energy": energy_wh,
            },
            {"ID": 2, "Name": "switch", "State": 1, "Action": 6, "Delay": 5000},
        ],
    }


class Device:
    def __init__(self) -> None:
        self.payload: dict[str, Any] = netio_payload(100, 5000)
        self.status = 200
        self.delay_s = 0.0
        self.requests = 0


@pytest.fixture
def device() -> Iterator[tuple[str, Device]]:
    dev = Device()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            dev.requests += 1
            if dev.delay_s:
                time.sleep(dev.delay_s)
            if self.path != "/netio.json":
                self.send_error(404)
                return
            if dev.status != 200:
                self.send_error(dev.status)
                return
            body = json.dumps(dev.payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", dev
    finally:
        server.shutdown()
        server.server_close()


def test_output_load_integrated_over_the_window(device: tuple[str, Device], tmp_path: Path) -> None:
    url, dev = device
    ms = MeterSession(
        interval_s=0.05,
        powercap_root=tmp_path / "none",
        gpu_uuids=[],
        wall_url=url,
        wall_output=1,
        wall_interval_s=3600,  # driven by sample_now below
    )
    ms.start()
    ms.sample_now()
    t0 = time.monotonic_ns()
    ms.sample_now()
    dev.payload = netio_payload(100, 5001)
    ms.sample_now()
    t1 = time.monotonic_ns()
    ms.sample_now()
    ms.stop()
    out = ms.summarize(t0, t1)
    wall = out["metrics"]["wall_energy_j"]
    assert wall["available"]
    assert wall["value"] == pytest.approx(100.0 * out["window_s"])  # constant 100 W
    assert wall["device_counter_j"] == pytest.approx(3600.0)  # 1 Wh step, kept as cross-check
    assert out["metrics"]["wall_power_w"]["value"] == pytest.approx(100.0)
    assert "wall" not in out["metrics"]["total_energy_j"].get("covers", [])


def test_total_load_when_no_output_given(device: tuple[str, Device]) -> None:
    url, _ = device
    meter = WallMeter(url)
    assert meter.open().available
    assert meter.read()[0] == 300.0
    assert meter.read()[1] == pytest.approx(91234 * 3600.0)


def test_url_may_name_netio_json(device: tuple[str, Device]) -> None:
    url, _ = device
    meter = WallMeter(url + "/netio.json", output_id=1)
    assert meter.open().available
    assert meter.read()[0] == 100.0


def test_unmetered_and_unknown_outputs_are_unavailable(device: tuple[str, Device]) -> None:
    url, _ = device
    avail = WallMeter(url, output_id=2).open()
    assert not avail.available and "no Load" in (avail.reason or "")
    avail = WallMeter(url, output_id=7).open()
    assert not avail.available and "[1, 2]" in (avail.reason or "")


def test_auth_and_unreachable_and_slow(device: tuple[str, Device]) -> None:
    url, dev = device
    dev.status = 401
    avail = WallMeter(url).open()
    assert not avail.available and "credentials" in (avail.reason or "")
    dev.status = 200
    dev.delay_s = 1.0
    avail = WallMeter(url, timeout_s=0.2).open()
    assert not avail.available and "cannot reach" in (avail.reason or "")
    dev.delay_s = 0.0
    avail = WallMeter("http://127.0.0.1:9", timeout_s=0.5).open()  # discard port: refused
    assert not avail.available and "cannot reach" in (avail.reason or "")


def test_session_without_wall_url_reports_why(tmp_path: Path) -> None:
    ms = MeterSession(interval_s=0.05, powercap_root=tmp_path / "none", gpu_uuids=[])
    ms.start()
    t0 = time.monotonic_ns()
    ms.sample_now()
    t1 = time.monotonic_ns()
    ms.stop()
    wall = ms.summarize(t0, t1)["metrics"]["wall_energy_j"]
    assert wall["value"] is None and not wall["available"] and "wall_url" in wall["reason"]
