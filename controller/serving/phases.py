"""Where a load point's joules went: each piece of its window shared among the requests in flight,
by phase (prefill, decode) and per request, per energy domain, with the bound of every share.

The window is cut at the meters' sampling interval and at every request's phase boundaries
(:mod:`controller.serving.phase_work`), so that in each piece the requests in flight, and what each
does, are known. A piece's energy (a domain's cumulative energy at its two ends,
:mod:`controller.meters.timeline`) is shared in proportion to the work each request did in it:
prompt tokens processed in its prefill, one unit per token generated in its decode. Where both kinds
of work share a piece, a prompt token and an output token weigh what each costs: their costs per
token as a least-squares fit over the window's intervals finds them (``costs``), else one unit each. A piece where no
request worked (the server between requests, HTTP, a request queueing) is ``other``. The static
part of a piece is the idle baseline's power times its length, shared the same way; the active
part is the rest.

Bounds. The meters: a sum of pieces telescopes to the cumulative energy at the instants where a
share changes, so a share's bound is the sum over those instants of the change times the value's
bound there. The attribution: where prefill and decode ran in one piece (several requests at
once), nothing in the timeline says how its energy divides between them; the bound takes the worst
(all of it to either phase). At concurrency 1, or where the engine runs one request at a time, no
piece mixes phases and that part is 0. Shares among requests in the same phase are a convention
(work-proportional), not a measurement: a request's bound covers the meters only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from controller.meters.timeline import DomainCurve
from controller.serving.client import RequestResult
from controller.serving.phase_work import Work, request_work

PHASES = ("prefill", "decode", "other")
#: Columns of the least-squares fit's rows, one row per sampling interval (``rows`` is 1 in each, for
#: their count and mean): E ~ static·t + a·prompt + b·output (:mod:`controller.serving.phase_fit`).
FIT_COLUMNS = ("rows", "seconds", "prompt_tokens", "output_tokens", "energy_j")
_OTHER = {"prefill": 0.0, "decode": 0.0, "other": 1.0}


@dataclass
class Idle:
    """The idle baseline as the attribution needs it: power per domain (None: not known, see
    ``reason``), and ``bound(domain, seconds)``: the bound (J) of idle power over that long."""

    power_w: dict[str, float | None]
    reason: dict[str, str]
    bound: Callable[[str, float], float | None]


def no_idle(reason: str) -> Idle:
    return Idle({}, {}, lambda d, s: None) if not reason else Idle({}, {"*": reason}, lambda d, s: None)


def _zeros(domains: list[str]) -> dict[str, dict[str, float]]:
    return {ph: dict.fromkeys(domains, 0.0) for ph in PHASES}


@dataclass
class PhaseSums:
    """Per phase and domain: gross and static J, the meters' bound, the attribution's bound (of the
    gross and of the active figure), and the phase's time (s, pieces weighted by its share)."""

    domains: list[str]
    gross: dict[str, dict[str, float]] = field(default_factory=dict)
    static: dict[str, dict[str, float]] = field(default_factory=dict)
    meter_bound: dict[str, dict[str, float]] = field(default_factory=dict)
    split_bound: dict[str, dict[str, float]] = field(default_factory=dict)
    split_bound_active: dict[str, dict[str, float]] = field(default_factory=dict)
    time_s: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("gross", "static", "meter_bound", "split_bound", "split_bound_active"):
            setattr(self, name, _zeros(self.domains))
        self.time_s = dict.fromkeys(PHASES, 0.0)


@dataclass
class RequestSums:
    """One request's shares (J, over the domains): gross, static, of which prefill and decode, the
    meters' bound."""

    gross: float = 0.0
    static: float = 0.0
    prefill: float = 0.0
    decode: float = 0.0
    bound: float = 0.0


@dataclass
class Attribution:
    window: tuple[int, int]
    grid_s: float
    domains: list[str]
    unavailable: dict[str, str]  # domain -> why it has no curve over this window
    phases: PhaseSums
    requests: dict[int, RequestSums]
    works: dict[int, Work]
    unlocated: list[int]  # requests with no token: nothing places their work in time
    mixed_s: float  # time in which prefill and decode shared pieces
    pieces: int
    gram: list[list[float]]  # the fit's sufficient statistics over FIT_COLUMNS
    fit_rows: int
    peak_power_w: float | None  # the highest mean power over one whole sampling interval, all domains


class _Walk:
    """The state carried from piece to piece: the shares in force, for the telescoped bounds."""

    def __init__(self, sums: PhaseSums, requests: dict[int, RequestSums]) -> None:
        self.sums, self.requests = sums, requests
        self.phase_w = dict.fromkeys(PHASES, 0.0)
        self.req_w: dict[int, float] = {}

    def turn(self, phase_w: dict[str, float], req_w: dict[int, float], err: dict[str, float]) -> None:
        """At an instant whose values carry ``err`` (J per domain), the shares change to these."""
        total = sum(err.values())
        for ph in PHASES:
            delta = abs(phase_w[ph] - self.phase_w[ph])
            if delta:
                for d, e in err.items():
                    self.sums.meter_bound[ph][d] += delta * e
        for i in set(req_w) | set(self.req_w):
            delta = abs(req_w.get(i, 0.0) - self.req_w.get(i, 0.0))
            if delta:
                self.requests[i].bound += delta * total
        self.phase_w, self.req_w = phase_w, req_w


def _breakpoints(window: tuple[int, int], grid_ns: int, works: list[Work]) -> list[int]:
    t0, t1 = window
    pts = {t0, t1, *range(t0 + grid_ns, t1, grid_ns)}
    for w in works:
        pts.update(t for t in (w.prefill[0], w.prefill[1], w.end) if t0 < t < t1)
    return sorted(pts)


def _values(
    curves: dict[str, DomainCurve], points: list[int]
) -> tuple[dict[str, list[float]], dict[str, list[float]], dict[str, str]]:
    """Each usable domain's cumulative energy and its bound at every point; why the others are not."""
    values: dict[str, list[float]] = {}
    bounds: dict[str, list[float]] = {}
    unavailable: dict[str, str] = {}
    for d, c in curves.items():
        if c.curve is None:
            unavailable[d] = c.reason or "not measured"
            continue
        got = [c.curve.at(t) for t in points]
        if any(v is None for v in got):
            unavailable[d] = f"{c.source}: its reads do not cover the whole window"
            continue
        values[d] = [v[0] for v in got if v is not None]
        bounds[d] = [v[1] for v in got if v is not None]
    return values, bounds, unavailable


def attribute(
    results: list[RequestResult],
    window: tuple[int, int],
    curves: dict[str, DomainCurve],
    idle: Idle,
    grid_s: float,
    costs: tuple[float, float] = (1.0, 1.0),
) -> Attribution:
    """Share the window's energy by phase and request (see the module's docstring); ``costs``: what
    a prompt token and an output token weigh against each other where both kinds of work share a
    piece (one unit each, or their costs per token as the least-squares fit found them)."""
    works: list[Work] = []
    unlocated: list[int] = []
    for r in results:
        w = request_work(r)
        if w is None:
            unlocated.append(r.index)
        else:
            works.append(w)
    grid_ns = max(1, int(grid_s * 1e9))
    points = _breakpoints(window, grid_ns, works)
    values, bounds, unavailable = _values(curves, points)
    domains = list(values)
    sums = PhaseSums(domains)
    requests = {w.index: RequestSums() for w in works}
    walk = _Walk(sums, requests)
    idle_w = {d: idle.power_w.get(d) or 0.0 for d in domains}
    cells: dict[int, list[float]] = {}
    order = sorted(works, key=lambda w: w.start)
    active: list[Work] = []
    nxt, mixed_s = 0, 0.0
    for k in range(len(points) - 1):
        a, b = points[k], points[k + 1]
        while nxt < len(order) and order[nxt].start < b:
            active.append(order[nxt])
            nxt += 1
        active = [w for w in active if w.end > a]
        units = [(w.index, w.prefill_between(a, b), w.decode_between(a, b)) for w in active]
        units = [c for c in units if c[1] or c[2]]
        contrib = [(i, costs[0] * p, costs[1] * q) for i, p, q in units]
        wp, wd = sum(c[1] for c in contrib), sum(c[2] for c in contrib)
        work = wp + wd
        phase_w = {"prefill": wp / work, "decode": wd / work, "other": 0.0} if work else _OTHER
        walk.turn(phase_w, {i: (p + q) / work for i, p, q in contrib}, {d: bounds[d][k] for d in domains})
        dt = (b - a) / 1e9
        energy = {d: values[d][k + 1] - values[d][k] for d in domains}
        static = {d: idle_w[d] * dt for d in domains}
        mixed = 0.0 < phase_w["prefill"] < 1.0
        for ph, f in phase_w.items():
            sums.time_s[ph] += f * dt
            for d in domains:
                sums.gross[ph][d] += f * energy[d]
                sums.static[ph][d] += f * static[d]
                if mixed and ph != "other":
                    worst = max(phase_w["prefill"], phase_w["decode"])
                    sums.split_bound[ph][d] += worst * abs(energy[d])
                    sums.split_bound_active[ph][d] += worst * abs(energy[d] - static[d])
        mixed_s += dt if mixed else 0.0
        e_all, s_all = sum(energy.values()), sum(static.values())
        for i, p, q in contrib:
            req = requests[i]
            req.gross += (p + q) / work * e_all
            req.static += (p + q) / work * s_all
            req.prefill += p / work * e_all
            req.decode += q / work * e_all
        cell = cells.setdefault((a - window[0]) // grid_ns, [1.0, 0.0, 0.0, 0.0, 0.0])
        prompt, output = sum(c[1] for c in units), sum(c[2] for c in units)
        for j, v in enumerate((dt, prompt, output, e_all), start=1):
            cell[j] += v
    walk.turn(dict.fromkeys(PHASES, 0.0), {}, {d: bounds[d][-1] for d in domains} if points else {})
    gram, rows = _gram(list(cells.values()))
    whole = [c[4] / c[1] for c in cells.values() if c[1] >= 0.999 * grid_s]
    return Attribution(
        window, grid_s, domains, unavailable, sums, requests, {w.index: w for w in works}, unlocated,
        mixed_s, len(points) - 1, gram, rows, max(whole) if whole and domains else None,
    )  # fmt: skip


def _gram(rows: list[list[float]]) -> tuple[list[list[float]], int]:
    """Sum of z zᵀ over the rows (z: FIT_COLUMNS), the normal equations of every fit over them."""
    n = len(FIT_COLUMNS)
    g = [[0.0] * n for _ in range(n)]
    for z in rows:
        for i in range(n):
            zi = z[i]
            if zi:
                row = g[i]
                for j in range(n):
                    row[j] += zi * z[j]
    return g, len(rows)
