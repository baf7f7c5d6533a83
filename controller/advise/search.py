"""The search: screening runs of every candidate, then more runs only for those that may still be
the answer or on the front, until the intervals separate them, the repetition cap is reached or the
budget is spent.

Every round is an ordinary campaign session over the advise folder (``campaign run``'s lock, order,
resume and records), its file rewritten with each candidate's repetitions so far; what to run next
is decided from the records alone, so an interrupted advise resumes where it stopped when the same
command is run again.
"""

from __future__ import annotations

import contextlib
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from controller.advise.campaign import CAMPAIGN_FILE, advise_dir, campaign_text, load_text
from controller.advise.candidate import Candidate
from controller.advise.observe import Basis, Observation, observe
from controller.advise.race import Standing, axes_of, standings, wanted
from controller.advise.request import AdviseRequest
from controller.advise.space import Space
from controller.campaigns import Campaign
from controller.campaigns.history import recorded, resolve_seed
from controller.progress import fmt_duration
from controller.quiet import SessionWait

SCREEN_SHARE = 0.6  # screening must fit in this share of the budget, or it is cut to one run each
CHUNK_SHARE = 0.15  # a screening session holds about this share of the budget, so an overrun stops early
MIN_CHUNK = 3  # runs: fewer would spend more on sessions' start than on runs


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class Progress:
    """Runs done, seconds spent, and the seconds a run takes here (measured once runs finish)."""

    started: float = field(default_factory=time.monotonic)
    runs: int = 0
    rounds: list[tuple[str, int, float]] = field(default_factory=list)  # (phase, runs, seconds)
    first_guess_s: float = 30.0

    @property
    def per_run_s(self) -> float:
        """The median of the sessions' seconds per run, each counted once per run it held (a
        candidate's first run carries its conversion: a mean would let those dominate)."""
        each = [s / n for _, n, s in self.rounds for _ in range(n) if n]
        return statistics.median(each) if each else self.first_guess_s

    def spent(self) -> float:
        return time.monotonic() - self.started


@dataclass
class Outcome:
    space: Space
    observations: dict[str, Observation]
    basis: Basis
    table: dict[str, Standing]
    reps: dict[str, int]
    progress: Progress
    stopped: str  # why the search stopped
    campaign_file: Path | None = None
    interrupted: bool = False


def done_reps(req: AdviseRequest, candidates: list[Candidate]) -> dict[str, int]:
    """Repetitions each candidate has records of (any state), from the folder."""
    names = {c.name for c in candidates}
    reps: dict[str, int] = {}
    for recs in recorded(req.results, req.campaign).values():
        for rec in recs:
            cell = rec.get("cell") or {}
            name, rep = cell.get("configuration"), cell.get("repetition")
            if name in names and isinstance(rep, int):
                reps[name] = max(reps.get(name, 0), rep)
    return reps


class Search:
    def __init__(self, space: Space, say: Callable[[str], None] = _stderr) -> None:
        self.space = space
        self.req = space.request
        self.say = say
        self.progress = Progress()
        self.reps = done_reps(self.req, space.candidates)
        self.seed: int | None = None
        self.file = advise_dir(self.req) / CAMPAIGN_FILE
        self.interrupted = False
        # A busy host is remembered across the search's sessions as within one campaign session:
        # once a run waited out the bound, runs check and flag without waiting until one finds quiet.
        self.quiet = SessionWait(self.req.quiet_wait_s)

    # -- one session of the campaign ---------------------------------------------------------

    def _campaign(self, reps: dict[str, int]) -> Campaign:
        ran = [c for c in self.space.candidates if reps.get(c.name, 0) > 0]
        text = campaign_text(self.req, ran, reps, self.seed)
        return load_text(text, self.file)

    def _session(self, phase: str, add: dict[str, int]) -> bool:
        """Run the cells that bring candidates to ``reps + add``; False when interrupted."""
        from controller.campaigns.execute import run_campaign

        target = {**self.reps, **{n: self.reps.get(n, 0) + k for n, k in add.items()}}
        runs = sum(add.values())
        eta = runs * self.progress.per_run_s
        left = self.req.budget_s - self.progress.spent()
        self.say(
            f"advise {phase}: {runs} run{'s' if runs != 1 else ''} of {len(add)} candidate"
            f"{'s' if len(add) != 1 else ''}, ETA ~{fmt_duration(eta)}; budget left {fmt_duration(max(0.0, left))}"
        )
        t0 = time.monotonic()
        campaign = self._campaign(target)
        before = {r["run_id"] for recs in recorded(self.req.results, self.req.campaign).values() for r in recs}
        with contextlib.redirect_stdout(sys.stderr):  # the campaign's own summary is progress here
            code = run_campaign(
                campaign,
                self.req.results,
                retry_failed=self.req.retry_failed,
                cache=self.req.cache,
                runner=None if self.req.runner == "auto" else self.req.runner,
                cluster=self.req.cluster,
                quiet_wait_s=self.quiet.next_s(),
                say=self.say,
            )
        new = [r for recs in recorded(self.req.results, self.req.campaign).values() for r in recs]
        for rec in sorted((r for r in new if r["run_id"] not in before), key=lambda r: r["run_id"]):
            self.quiet.saw(rec.get("host_state"))
        self.progress.rounds.append((phase, runs, time.monotonic() - t0))
        self.progress.runs += runs
        self.reps = {**self.reps, **{n: max(self.reps.get(n, 0), target[n]) for n in add}}
        if code == 130:
            self.interrupted = True
        return code != 130

    # -- the phases --------------------------------------------------------------------------

    def screen_plan(self) -> tuple[int, float]:
        """Runs per candidate in screening (the request's, or 1 when that cannot fit), and its estimate."""
        from controller.campaigns.estimate import estimate
        from controller.campaigns.readiness import assess

        need = {c.name: max(0, self.req.screen - self.reps.get(c.name, 0)) for c in self.space.candidates}
        probe = {c.name: max(1, self.reps.get(c.name, 0) + 1) for c in self.space.candidates}
        campaign = load_text(campaign_text(self.req, self.space.candidates, probe, self.seed or 0))
        assessment = assess(campaign, self.space.runner)
        history = recorded(self.req.results, self.req.campaign)
        first = [c for c in campaign.matrix() if c.repetition == self.reps.get(c.configuration, 0) + 1]
        one = estimate(first, assessment, history).seconds
        per = one / max(1, len(first))
        self.progress.first_guess_s = per
        total = sum(need.values()) * per
        if total <= SCREEN_SHARE * self.req.budget_s or self.req.screen <= 1:
            return self.req.screen, total
        return 1, sum(1 for n in need.values() if n > 0) * per

    def screening(self, runs_each: int) -> None:
        order = list(self.space.candidates)
        random.Random(self.seed).shuffle(order)  # chunks of the screening mix runtimes
        for rep in range(1, runs_each + 1):
            todo = [c.name for c in order if self.reps.get(c.name, 0) < rep]
            need, left = len(todo) * self.progress.per_run_s, self.req.budget_s - self.progress.spent()
            if rep > 1 and todo and need > SCREEN_SHARE * left:
                self.say(
                    f"advise: screening run {rep} of {len(todo)} candidates would take ~{fmt_duration(need)} of the "
                    f"{fmt_duration(left)} left (runs take ~{fmt_duration(self.progress.per_run_s)} here): refining "
                    "from the runs so far instead"
                )
                return
            while todo:
                if self._out_of_budget():
                    return
                size = self._chunk()
                chunk, todo = todo[:size], todo[size:]
                if not self._session(f"screening (run {rep} of {runs_each} each)", {n: 1 for n in chunk}):
                    return

    def _chunk(self) -> int:
        """Runs in the next screening session: a few until a run's time here is measured, then about
        CHUNK_SHARE of the budget, never more than the budget left holds (a session is not cut short)."""
        per = self.progress.per_run_s
        size = MIN_CHUNK if not self.progress.rounds else max(MIN_CHUNK, int(CHUNK_SHARE * self.req.budget_s / per))
        left = self.req.budget_s - self.progress.spent()
        return max(1, min(size, int(left // per)))

    def _out_of_budget(self) -> bool:
        return self.progress.spent() + self.progress.per_run_s > self.req.budget_s

    def refining(self) -> str:
        """More runs for the candidates that need them; why it stopped."""
        round_ = 0
        cap = self.req.max_repetitions
        while True:
            obs, basis = observe(
                self.space.candidates, self.req.results, self.req.campaign, self.req.goals, self.serving
            )
            axes = axes_of(self.req.goals, basis, self.req.mode)
            table = standings(
                obs, basis, self.req.goals, axes, self.req.alpha, self.req.min_agreement, self.req.max_accuracy_drop
            )
            uncapped = wanted(obs, table, basis, axes, self.req.alpha, 10**9)
            # A candidate that keeps failing, or has had its runs, gets no more.
            want = [n for n in uncapped if self.reps.get(n, 0) < cap and len(obs[n].failures) < 2]
            if not want:
                if uncapped:
                    return f"the repetition cap ({cap} runs a candidate, --max-repetitions)"
                return "the intervals: they decided what the answer needs"
            left = self.req.budget_s - self.progress.spent()
            fits = int(left // self.progress.per_run_s)
            if fits < 1:
                return f"the budget ({fmt_duration(self.req.budget_s)})"
            round_ += 1
            if not self._session(f"refining round {round_}", {n: 1 for n in want[:fits]}):
                return "an interruption"

    @property
    def serving(self) -> bool:
        return self.req.mode == "serving"

    def run(self) -> Outcome:
        self.seed = resolve_seed(self.req.results, self._campaign_for_seed())
        runs_each, est = self.screen_plan()
        if runs_each < self.req.screen:
            self.say(
                f"advise: screening {len(self.space.candidates)} candidates {self.req.screen} times each would take "
                f"~{fmt_duration(est / max(1, runs_each) * self.req.screen)} of the {fmt_duration(self.req.budget_s)} "
                "budget: one run each, then more only where needed"
            )
        self.say(
            f"advise: {len(self.space.candidates)} candidates; screening {runs_each} run{'s' if runs_each > 1 else ''} "
            f"each, ~{fmt_duration(est)} estimated, then refining what may still matter, within the "
            f"{fmt_duration(self.req.budget_s)} budget"
        )
        self.screening(runs_each)
        stopped = (
            "an interruption"
            if self.interrupted
            else (self.refining() if not self._out_of_budget() else f"the budget ({fmt_duration(self.req.budget_s)})")
        )
        return self.outcome(stopped)

    def _campaign_for_seed(self) -> Campaign:
        return load_text(campaign_text(self.req, self.space.candidates[:1], {}, None))

    def outcome(self, stopped: str) -> Outcome:
        obs, basis = observe(self.space.candidates, self.req.results, self.req.campaign, self.req.goals, self.serving)
        axes = axes_of(self.req.goals, basis, self.req.mode)
        table = standings(
            obs, basis, self.req.goals, axes, self.req.alpha, self.req.min_agreement, self.req.max_accuracy_drop
        )
        file = self.file if self.file.is_file() else None
        return Outcome(self.space, obs, basis, table, dict(self.reps), self.progress, stopped, file, self.interrupted)


def median_elapsed(obs: dict[str, Observation]) -> float | None:
    times = [r.elapsed_s for o in obs.values() for r in o.runs if r.elapsed_s]
    return statistics.median(times) if times else None
