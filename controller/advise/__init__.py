"""``advise``: which runtime, settings and precision serve this model at this goal for the least energy.

``request`` holds what was asked; ``space`` turns the model and host into candidates (what
``models inspect`` and ``campaign plan`` say can run here, crossed with ``knobs``) and exclusions;
``campaign`` writes them as an ordinary campaign file; ``search`` runs it in sessions (screening,
then refining only what ``race`` says may still matter) within the budget; ``observe`` and
``quality`` read the records back; ``margin``, ``answer`` and ``plot`` give the answer.
"""

from __future__ import annotations

from controller.advise.request import AdviseRequest


def run_advise(req: AdviseRequest, plan_only: bool = False) -> int:
    """Plan (``plan_only``) or run the search and print the answer. 0 with a recommendation; 1 without
    one (nothing meets the goal, or nothing could run); 130 interrupted (run again to resume)."""
    from controller.advise.answer import build_answer, render, to_json
    from controller.advise.campaign import advise_dir
    from controller.advise.plan import render_plan
    from controller.advise.plot import plot_front
    from controller.advise.search import Search
    from controller.advise.space import build_space
    from controller.record import write_atomic

    space = build_space(req)
    if plan_only or not space.candidates:
        print(render_plan(space))
        return 0 if plan_only else 1
    outcome = Search(space).run()
    answer = build_answer(outcome)
    folder = advise_dir(req)
    folder.mkdir(parents=True, exist_ok=True)
    files = {"campaign": str(outcome.campaign_file or "-")}
    if any(r["runs"] for r in answer.rows):
        files["plot"] = str(plot_front(answer, folder / "front.png"))
    write_atomic(folder / "advise.json", to_json(answer))
    files["answer"] = str(folder / "answer.md")
    files["report"] = f"python -m controller report {req.results / req.campaign}"
    text = render(answer, files)
    (folder / "answer.md").write_text(text + "\n")
    print(text)
    if outcome.interrupted:
        return 130
    return 0 if answer.recommended else 1


__all__ = ["AdviseRequest", "run_advise"]
