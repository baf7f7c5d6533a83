"""Where and when each served request did its work: its prefill and its decode, in time.

Prefill (the prompt processed, ending in the first token) ends at the first token: when the engine
made it where the server says so (our server's ``engine_token_ns``), else when the client received
it. It starts when the request was sent, or later where the server says how long its prefill took
(ours: ``timings.first_token``; llama.cpp's server: ``timings.prompt_ms``), so that time spent
queueing behind other requests is not taken for prefill. Decode runs from the first token to the
last; each token after the first is one unit of decode work, spread over the gap before it.

Work per interval: prefill processes the request's prompt tokens evenly over its prefill; decode one
unit per generated token. These are the weights that share an interval's energy among the requests
in flight in it (:mod:`controller.serving.phases`).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from controller.serving.client import RequestResult

#: Server timings (ms) that say how long a request's prefill took on the engine, in order of trust.
PREFILL_TIMINGS = ("first_token", "prompt_ms")


@dataclass(frozen=True)
class Work:
    """One request's work in time (ns, ``time.monotonic_ns()``).

    ``prefill``: [start, end] over which its ``prompt_units`` were processed; ``decode_t``: the
    instants its tokens were made, the first at the prefill's end; the ``decode_units`` (tokens
    after the first) are spread evenly over the gaps between them."""

    index: int
    prompt_units: float
    prompt_known: bool
    prefill: tuple[int, int]
    decode_t: tuple[int, ...]
    decode_units: float
    output_tokens: int
    basis: str  # "engine": the engine's own token times; "client": when the client received them

    @property
    def start(self) -> int:
        return self.prefill[0]

    @property
    def end(self) -> int:
        return self.decode_t[-1] if self.decode_t else self.prefill[1]

    def prefill_between(self, a: int, b: int) -> float:
        """Prompt units processed in [a, b]."""
        s, e = self.prefill
        if e <= s:
            return self.prompt_units if a < e <= b else 0.0  # at one instant: in the piece that ends there
        overlap = min(b, e) - max(a, s)
        return self.prompt_units * overlap / (e - s) if overlap > 0 else 0.0

    def decode_between(self, a: int, b: int) -> float:
        """Decode units (output tokens after the first) made in [a, b]."""
        return self._decoded(b) - self._decoded(a)

    def _decoded(self, t: int) -> float:
        ts = self.decode_t
        if len(ts) < 2 or t <= ts[0]:
            return 0.0
        if t >= ts[-1]:
            return self.decode_units
        k = bisect_right(ts, t) - 1
        per_gap = self.decode_units / (len(ts) - 1)
        return per_gap * (k + (t - ts[k]) / (ts[k + 1] - ts[k]))


def token_instants(r: RequestResult) -> tuple[list[int], str]:
    """When each of the request's tokens was made (engine) or received (client), in ns, and which."""
    engine = r.engine_token_times_us
    if engine:
        return sorted(r.t_start_ns + us * 1000 for us in engine), "engine"
    return r.token_times_ns(), "client"


def request_work(r: RequestResult) -> Work | None:
    """Where ``r`` worked; None when it has no token (nothing places its work in time)."""
    times, basis = token_instants(r)
    if not times:
        return None
    first = times[0]
    start = r.t_start_ns
    timings = r.server_ms or {}
    for key in PREFILL_TIMINGS:
        ms = timings.get(key)
        if isinstance(ms, (int, float)) and ms > 0:
            start = max(start, first - int(ms * 1e6))
            break
    start = min(start, first)
    tokens = r.new_tokens if r.new_tokens is not None else len(times)
    decode = tuple(t for t in times if t >= first)
    units = float(max(tokens - 1, 0)) if len(decode) >= 2 else 0.0
    return Work(
        index=r.index,
        prompt_units=float(r.prompt_tokens) if r.prompt_tokens is not None else 1.0,
        prompt_known=r.prompt_tokens is not None,
        prefill=(start, first),
        decode_t=decode,
        decode_units=units,
        output_tokens=tokens,
        basis=basis,
    )
