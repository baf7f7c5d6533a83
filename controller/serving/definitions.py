"""What each serving figure of a record is, once, with the name the same (or a nearby) figure has in
vLLM's ``bench serve``, GuideLLM's and AIPerf's results, so that our figures can be set beside theirs.

Every serving record carries this table (``serving.definitions``); docs/serving.md shows it; ``report``
writes a load point as vLLM's result JSON (:mod:`controller.serving.vllm_result`), recomputing the
figures whose definitions differ from ours (vLLM's TPOT ends at the response, ours at the last token).
A figure ``NAME_ms_*`` has ``_mean``, ``_median``, ``_p90`` and ``_p99`` over the load point's
successful requests (percentiles with linear interpolation, numpy's default and vLLM's).
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Figure(NamedTuple):
    """A serving figure as the record writes it: declared once, here (the report's side: report/columns.py)."""

    unit: str
    direction: str | None  # "high" or "low": which is better; None: neither (a count of tokens)
    definition: str
    vllm: str  # the nearest figure of vLLM's bench serve, GuideLLM, AIPerf; "-": the tool has none
    guidellm: str
    aiperf: str


# name -> its declaration; the name is the record's (NAME_ms_*: its _mean, _median, _p90, _p99)
_TABLE: dict[str, Figure] = {
    "ttft_ms_*": Figure(
        "ms",
        "low",
        "time to first token: the request sent -> its first token event received (the client's clock)",
        "ttfts, *_ttft_ms: the same",
        "time_to_first_token_ms: the same",
        "time_to_first_token: the same",
    ),
    "tpot_ms_*": Figure(
        "ms",
        "low",
        "time per output token, the first excluded: (last token event - first token event) / (output tokens - 1), "
        "per request of two tokens or more",
        "*_tpot_ms: (E2EL - TTFT) / (output tokens - 1), so it also counts the time from the last token to the "
        "end of the response",
        "inter_token_latency_ms: the same; its time_per_output_token_ms is another figure, (last token - sent) / "
        "output tokens, the first token included",
        "inter_token_latency: (request latency - TTFT) / (output tokens - 1), with output tokens counted by "
        "re-tokenising the text",
    ),
    "itl_ms_*": Figure(
        "ms",
        "low",
        "inter-token latency: the gaps between successive token events of a request, over every gap of every "
        "request (a server that puts several tokens in one event has fewer, longer gaps)",
        "itls, *_itl_ms: the same",
        "-: its inter_token_latency_ms is our TPOT",
        "inter_chunk_latency: the same; its inter_token_latency is our TPOT on its own token count",
    ),
    "e2el_ms_*": Figure(
        "ms",
        "low",
        "end-to-end latency: the request sent -> the response read to its end",
        "latencies, *_e2el_ms: the same",
        "request_latency (s): the same",
        "request_latency: the same",
    ),
    "new_tokens_total": Figure(
        "tokens",
        None,
        "output tokens of the successful requests: the server's usage.completion_tokens, else its token ids, "
        "else max_tokens when it ended the stream at max_tokens (finish_reason length), else the token events "
        "(per request: output_tokens_source)",
        "total_output_tokens: usage when sent, else the text re-tokenised",
        "output_token_count: usage when sent, else the length asked",
        "output_sequence_length: the text re-tokenised with its own tokenizer",
    ),
    "prompt_tokens_total": Figure(
        "tokens",
        None,
        "prompt tokens of the successful requests, from the server's usage; null when it does not say",
        "total_input_tokens: the prompt lengths of its own tokenizer",
        "prompt_token_count",
        "input_sequence_length",
    ),
    "window_s": Figure(
        "s",
        "low",  # the same prompts served in less time
        "the measure window: the first request sent -> the last response read",
        "duration: the same",
        "-",
        "benchmark_duration: the same",
    ),
    "request_throughput_rps": Figure(
        "requests/s",
        "high",
        "successful requests / window_s",
        "request_throughput: the same",
        "requests_per_second",
        "request_throughput: the same",
    ),
    "output_token_throughput_tps": Figure(
        "tokens/s",
        "high",
        "new_tokens_total / window_s",
        "output_throughput: the same, on its token count",
        "output_tokens_per_second",
        "output_token_throughput: the same, on its token count",
    ),
    "total_token_throughput_tps": Figure(
        "tokens/s",
        "high",
        "(prompt tokens + output tokens) / window_s; null when the prompt tokens are unknown",
        "total_token_throughput: the same",
        "tokens_per_second",
        "-",
    ),
    "goodput_rps": Figure(
        "requests/s",
        "high",
        "successful requests meeting every --slo given / window_s (a one-token request meets a TPOT SLO)",
        "request_goodput: the same rule",
        "-",
        "goodput",
    ),
    "send_lag_ms_*": Figure(
        "ms",
        "low",
        "the request sent - when the load wanted it sent (its arrival): the client's own lag",
        "-",
        "request_targeted_start_delay (s, a mean)",
        "-",
    ),
    "queue_ms_*": Figure(
        "ms",
        "low",
        "on the server: the request received -> its engine started it (waiting for the requests ahead); "
        "from the server's own timings (joulebench's server); null when the server does not say",
        "-: its client_queue_time is the client waiting for a --max-concurrency slot, not the server",
        "-",
        "-",
    ),
    "http_overhead_ms_mean": Figure(
        "ms",
        "low",
        "E2EL - queue_ms - the server's own work (tokenize, generate, decode): what the HTTP server, the "
        "stream and the client added, queueing excluded; null when the server does not say its timings",
        "-",
        "-",
        "-",
    ),
    "engine_itl_ms_*": Figure(
        "ms",
        "low",
        "ITL on the engine's clock: the gaps between when the engine made successive tokens (joulebench's "
        "server says when; null for other servers)",
        "-",
        "-",
        "-",
    ),
    "engine_tpot_ms_*": Figure(
        "ms",
        "low",
        "TPOT on the engine's clock: (last token made - first token made) / (output tokens - 1)",
        "-",
        "-",
        "-",
    ),
    "delivery_ms_*": Figure(
        "ms",
        "low",
        "per token: received by the client - made by the engine (the HTTP server, the stream, and the time the "
        "host took to run them); token_timing.agree is false (flag token_times_disagree) when the client's "
        "median ITL or TPOT strays from the engine's",
        "-",
        "-",
        "-",
    ),
    "steady_output_token_throughput_tps": Figure(
        "tokens/s",
        "high",
        "output tokens generated inside the steady window (steady_window.definition) / its length",
        "-",
        "-",
        "-",
    ),
    "energy_per_request_j": Figure(
        "J",
        "low",
        "the meters' total energy over window_s / successful requests (value gross, net_j idle-subtracted)",
        "-",
        "-",
        "-",
    ),
    "energy_per_token_j": Figure(
        "J",
        "low",
        "the meters' total energy over window_s (prefill, decode and the rest) / new_tokens_total (value gross, "
        "net_j idle-subtracted); for decode alone, energy_per_output_token_decode_j",
        "-",
        "-",
        "-",
    ),
    "energy_per_output_token_steady_j": Figure(
        "J",
        "low",
        "the meters' total energy over the steady window / the output tokens generated inside it",
        "-",
        "-",
        "-",
    ),
    "prefill_energy_j": Figure(
        "J",
        "low",
        "energy drawn while requests were in prefill (sent, or the server's own prefill start, -> first token): "
        "each piece of the window (the sampling interval, cut at every phase boundary) shared among the requests "
        "working in it by their work (prompt tokens in prefill, output tokens in decode, each weighed by its cost "
        "per token where the window's least-squares fit tells them apart, else one unit each: "
        "phase_attribution.weights); per domain, with static_j (idle power x its time), active_j (the rest) and "
        "bounds. MLCommons: prefill_energy_joules",
        "-",
        "-",
        "-",
    ),
    "decode_energy_j": Figure(
        "J",
        "low",
        "the same for decode (first token -> last). MLCommons: generation_energy_joules",
        "-",
        "-",
        "-",
    ),
    "other_energy_j": Figure(
        "J",
        "low",
        "the window's energy in pieces where no request worked (between requests, HTTP, queueing); prefill + "
        "decode + other = the window's energy",
        "-",
        "-",
        "-",
    ),
    "static_energy_j": Figure(
        "J",
        None,
        "the idle baseline's power x window_s, per domain (static_energy_steady_j: over the steady window); "
        "unavailable without a baseline. MLCommons: static_power_baseline_watts x the window",
        "-",
        "-",
        "-",
    ),
    "active_energy_j": Figure(
        "J",
        "low",
        "the window's energy less its static part (active_energy_steady_j: over the steady window)",
        "-",
        "-",
        "-",
    ),
    "energy_per_prompt_token_prefill_j": Figure(
        "J",
        "low",
        "prefill_energy_j / the prompt tokens (active_j: its active part)",
        "-",
        "-",
        "-",
    ),
    "energy_per_output_token_decode_j": Figure(
        "J",
        "low",
        "decode_energy_j / the output tokens: decode alone. MLCommons: energy_per_token_joules "
        "(generation_energy_joules / output_token_count)",
        "-",
        "-",
        "-",
    ),
    "request_energy_j": Figure(
        "J",
        "low",
        "per request (serving.requests): its shares of the pieces it worked in (prefill and decode), gross, with "
        "its static and active parts and their bounds; request_energy_j_mean/_median/_p90/_p99 over the "
        "successful requests, request_energy_j_uncertainty their bounds (the mean's: the requests' mean bound; "
        "a percentile's: the largest request's). Shares among requests working together are by work: a "
        "convention, bounded for the meters only",
        "-",
        "-",
        "-",
    ),
    "energy_per_output_token_mlenergy_steady_j": Figure(
        "J",
        "low",
        "the meters' total energy over ML.ENERGY's steady window (mlenergy_steady_window: from the B-th first "
        "token to the (N-B-1)-th response finished, B the concurrency or the engine's) / the output tokens "
        "received inside it. ML.ENERGY: steady_state_energy_per_token",
        "-",
        "-",
        "-",
    ),
    "phase_fit": Figure(
        "-",
        None,
        "least squares over the window's sampling intervals: E = static_w x t + j_per_prompt_token x prompt "
        "tokens + j_per_output_token x output tokens (static fixed at the idle baseline where there is one), R², "
        "standard errors, and whether it agrees with the attributed phases; gram: its sums, pooled over load "
        "points by the report",
        "-",
        "-",
        "-",
    ),
}


def definitions() -> dict[str, dict[str, Any]]:
    """The table as the record keeps it: ``{name: {"unit", "direction", "definition", "vllm", ...}}``."""
    return {name: figure._asdict() for name, figure in _TABLE.items()}


def markdown_table() -> str:
    """The table as docs/serving.md shows it (regenerate with ``python -m controller.serving.definitions``)."""
    rows = ["| record figure | definition | vLLM `bench serve` | GuideLLM | AIPerf |", "|---|---|---|---|---|"]
    for name, f in _TABLE.items():
        rows.append(f"| `{name}` ({f.unit}) | {f.definition} | {f.vllm} | {f.guidellm} | {f.aiperf} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
