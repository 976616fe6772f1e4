"""The second phase of an evaluation: the metrics' classifier fits, each run once, by one rank.

A metric first computes its points on every rank (encoding is shared: codes.py), then hands back a
`Plan`: the independent fits that remain (one per factor for DCI and SAP, one for the β-VAE
metric) and how its scores follow from their results. `run_plans` deals the fits of all plans (all
metrics, all models of a pack) to the ranks, longest first to the least loaded rank (a fixed rule,
so every rank knows the deal without talking), runs its own share over its threads and gathers
every result to every rank. A fit's result depends only on its inputs, never on the rank or the
thread count that computed it, so the scores are the same on any number of ranks.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Callable

from rich.progress import Progress
from threadpoolctl import threadpool_limits


# What degenerate codes (a code that never varies, one class in a fit) make numpy, scipy and
# scikit-learn raise: such a metric scores NaN and says why, and the other metrics are kept.
DEGENERATE = (ValueError, ArithmeticError)


@dataclass(frozen=True)
class Failure:
    """A metric (or one of its fits) that could not be computed on these codes, and why."""

    why: str


def attempt(function: Callable, *args) -> Any:
    """`function(*args)`, or the Failure that degenerate codes made it raise."""
    try:
        return function(*args)
    except DEGENERATE as e:
        return Failure(f"{type(e).__name__}: {e}".splitlines()[0])


@dataclass(frozen=True)
class Fit:
    name: str  # e.g. "dci/orientation": shown in progress and in the evaluation's `fits` record
    cost: float  # relative work, to balance the ranks (e.g. classes x samples)
    run: Callable[[int], Any]  # given the threads it may use, returns a picklable result


@dataclass
class Plan:
    fits: list[Fit]
    finish: Callable[[list], dict | Failure]  # the fits' results, in order -> {score: value}
    seconds: float = 0.0  # the metric's own work before the fits (its points)
    fit_seconds: list[float] = field(default_factory=list)


def done(scores: dict | Failure) -> Plan:
    """The plan of a metric whose scores need no fit (or that failed before any)."""
    return Plan([], lambda results: scores)


def deal(costs: list[float], ranks: int) -> list[int]:
    """The rank of each fit: the costliest first, each to the rank with the least work so far (ties
    to the lowest rank), so that the ranks finish together."""
    load, owner = [0.0] * ranks, [0] * len(costs)
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        owner[i] = min(range(ranks), key=lambda r: (load[r], r))
        load[owner[i]] += costs[i]
    return owner


def _run(fits: list[Fit], mine: list[int], advance: Callable[[], None]) -> list[tuple[int, Any, float]]:
    """(index, result, seconds) of this rank's fits, over its threads (torch's count: the launcher's
    share of the cores): with at least as many fits as threads, a pool of single-threaded fits (the
    classifiers hold the process-wide one-thread BLAS limit throughout); else one after another,
    each on all of them."""
    import torch  # here, not at import: the metrics' settings are imported with the config

    threads = torch.get_num_threads()

    def one(i: int, threads: int) -> tuple[int, Any, float]:
        start = time.perf_counter()
        result = attempt(fits[i].run, threads)  # a fit that fails fails its metric alone
        return i, result, time.perf_counter() - start

    if threads == 1 or len(mine) < threads:
        done = []
        for i in mine:
            done.append(one(i, threads))
            advance()
        return done
    with threadpool_limits(1), ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(one, i, 1) for i in sorted(mine, key=lambda i: -fits[i].cost)]
        for _ in as_completed(futures):
            advance()
        return [future.result() for future in futures]


def run_plans(plans: list[Plan], accelerator=None, progress: Progress | None = None) -> tuple[list[dict], list]:
    """Each plan's scores (or its Failure), and a record of the fits: [name, rank, seconds] each.
    Every rank must call this with the same plans."""
    progress = progress or Progress(disable=True)
    fits = [fit for plan in plans for fit in plan.fits]
    ranks = accelerator.num_processes if accelerator else 1
    rank = accelerator.process_index if accelerator else 0
    owner = deal([fit.cost for fit in fits], ranks)
    mine = [i for i in range(len(fits)) if owner[i] == rank]
    task = progress.add_task(f"fits ({len(mine)} of {len(fits)} on this rank)", total=len(mine))
    ran = [(i, rank, result, seconds) for i, result, seconds in _run(fits, mine, lambda: progress.advance(task))]
    if ranks > 1:
        from accelerate.utils import gather_object

        ran = gather_object(ran)
    ran.sort(key=lambda entry: entry[0])
    assert [i for i, *_ in ran] == list(range(len(fits))), "every fit runs on exactly one rank"
    scores, start = [], 0
    for plan in plans:
        its = ran[start:start + len(plan.fits)]
        plan.fit_seconds = [seconds for *_, seconds in its]
        results = [result for _, _, result, _ in its]
        failed = next((result for result in results if isinstance(result, Failure)), None)
        scores.append(failed or attempt(plan.finish, results))
        start += len(plan.fits)
    record = [[fits[i].name, by, round(seconds, 3)] for i, by, _, seconds in ran]  # by: the rank that ran it
    return scores, record
