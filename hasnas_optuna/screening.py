"""Training-free mode: score many feasible candidates without training, then train only the best.

The HASNAS/SNASNet flow (paper.md 5 and 9.3), sized so that screening is cheap next to training:

1. **draw** ``score_trials`` distinct architectures uniformly at random that meet every budget
   (:meth:`~hasnas_optuna.sampler.HardwareAwareSampler.draw`: the analytical cost model, about a
   millisecond per proposal, no Optuna trial and no storage write per candidate);
2. **score** each at initialisation on one batch of ``score_batch`` training inputs
   (:func:`~hasnas_optuna.fitness.score_architecture`);
3. **record** them in the study ``<name>:scores`` (same storage) in chunks: one study user attribute
   ``screened/<digest>`` per chunk of up to :data:`CHUNK` candidates (key, score, parameters and
   costs). Writing each candidate as its own finished trial would cost one storage round trip per
   parameter (about 3 ms each on SQLite, some 70 ms per candidate, as much as scoring it), so
   candidates are not trials: they cannot be mixed up with trained trials, and
   :func:`load_scored` reads them back;
4. **train the best**: the ranked list goes to the study's
   :class:`~hasnas_optuna.sampler.HardwareAwareSampler` (:meth:`~hasnas_optuna.sampler.HardwareAwareSampler.prefer`),
   which gives each new trial the best candidate not yet in the study (``sampler/outcome =
   "ranked"``, user attributes ``screen/score`` and ``screen/rank``), workers sharing a storage
   included; with a plain sampler the best are enqueued instead.

Resuming: what ``<name>:scores`` holds is never scored again; a rerun scores only the missing
candidates (new draws, none already stored). Chunk names are digests of their content, so workers
screening at the same moment never overwrite each other's records; at worst they score a candidate
twice, and readers keep one record per key.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import optuna
import pytorch_lightning as pl
import torch
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from hasnas_optuna._errors import ConfigError
from hasnas_optuna.config import StudyConfig
from hasnas_optuna.fitness import score_architecture
from hasnas_optuna.sampler import KEY_ATTR, Candidate, HardwareAwareSampler, failed_on_its_own
from hasnas_optuna.search_space import architecture_from_params

__all__ = ["CHUNK", "Scored", "Screening", "load_scored", "scoring_batch", "screen", "train_best_scored"]

CHUNK = 50
"""Candidates per stored record (a few kB of JSON each)."""
_PREFIX = "screened/"
_COSTS = ("memory_params", "area_mm2", "latency_ms", "energy_uj")


@dataclass(frozen=True)
class Scored:
    """One screened candidate: its key, fitness (``-inf`` when undefined), parameters and costs."""

    key: str
    score: float
    params: dict[str, Any]
    costs: dict[str, float]


@dataclass(frozen=True)
class Screening:
    """What :func:`screen` did: every stored candidate ranked best first, and where the time went."""

    ranked: list[Scored]
    new: int
    seconds: dict[str, float] = field(default_factory=dict)


def scores_study_name(study_name: str) -> str:
    """The study that holds a study's screened candidates."""
    return f"{study_name}:scores"


def scoring_batch(datamodule: pl.LightningDataModule, size: int) -> torch.Tensor:
    """The first ``size`` training inputs: ``sample_batch`` when the data module has one."""
    if hasattr(datamodule, "sample_batch"):
        return datamodule.sample_batch(size)
    datamodule.setup("fit")
    return next(iter(datamodule.train_dataloader()))[0][:size]


def screen(config: StudyConfig, *, storage: str | BaseStorage, study_name: str, images: torch.Tensor,
           out: TextIO | None = None) -> Screening:
    """Score candidates until ``<study_name>:scores`` holds ``config.score_trials`` of them.

    Returns every stored candidate ranked best first (undefined scores last).

    Example:
        >>> from hasnas_optuna.config import StudyConfig
        >>> from hasnas_optuna.data import DigitsDataModule
        >>> config = StudyConfig.from_dict({"study": {"fitness": "sahd", "score_trials": 6},
        ...                                 "budgets": {"memory": 8000}})
        >>> images = scoring_batch(DigitsDataModule(), config.score_batch)
        >>> storage = optuna.storages.InMemoryStorage()
        >>> first = screen(config, storage=storage, study_name="demo", images=images)
        >>> first.new, len(first.ranked), all(c.costs["memory_params"] <= 8000 for c in first.ranked)
        (6, 6, True)
        >>> screen(config, storage=storage, study_name="demo", images=images).new  # nothing rescored
        0
    """
    if config.fitness == "trained":
        raise ConfigError("fitness='trained' scores nothing; use one of sahd, naswot, params")
    start = time.perf_counter()
    scores = _open_scores(config, storage, study_name)
    stored = _read(scores)
    todo = config.score_trials - len(stored)
    seconds = {"draw": 0.0, "score": 0.0, "record": 0.0}
    new = 0
    if todo > 0:
        sampler = HardwareAwareSampler(config.space, hardware=config.hardware(), budgets=config.budgets,
                                       seed=config.seed)
        tick = time.perf_counter()
        picks = sampler.draw(todo, exclude=stored, seed=_seed(config.seed, len(stored)))
        seconds["draw"] = time.perf_counter() - tick
        for begin in range(0, len(picks), CHUNK):
            rows = []
            tick = time.perf_counter()
            for pick in picks[begin:begin + CHUNK]:
                arch = architecture_from_params(pick.params, config.space)
                value = score_architecture(arch, images, fitness=config.fitness, seed=config.seed)
                rows.append(Scored(pick.key, value, pick.params, {c: float(getattr(pick.report, c)) for c in _COSTS}))
            seconds["score"] += time.perf_counter() - tick
            tick = time.perf_counter()
            new += _write(scores, rows, list(sampler._distributions))
            seconds["record"] += time.perf_counter() - tick
        if len(picks) < todo and out is not None:
            print(f"only {len(picks)} new architectures meet the budgets (asked for {todo})", file=out)
    ranked = _rank(_read(scores).values())
    seconds["total"] = time.perf_counter() - start
    if out is not None:
        print(f"scored {new} candidates by {config.fitness} in {seconds['total']:.1f} s (scoring "
              f"{seconds['score']:.1f} s); {len(ranked)} in {scores.study_name!r}", file=out)
    return Screening(ranked, new, seconds)


def load_scored(storage: str | BaseStorage, study_name: str) -> list[Scored]:
    """The screened candidates of ``study_name`` (its ``:scores`` study), ranked best first."""
    try:
        scores = optuna.load_study(storage=storage, study_name=scores_study_name(study_name))
    except KeyError:
        raise ConfigError(f"study {study_name!r} has no screened candidates ({scores_study_name(study_name)!r} "
                          "does not exist)") from None
    return _rank(_read(scores).values())


def train_best_scored(config: StudyConfig, study: optuna.Study, datamodule: pl.LightningDataModule, count: int,
                      out: TextIO | None = None) -> Screening:
    """Screen (or resume screening), then make the study train the best untrained candidates.

    With a :class:`HardwareAwareSampler` the study's sampler hands the ranked candidates out one per
    trial (:meth:`HardwareAwareSampler.prefer`); with another sampler the best ``count`` are enqueued.
    Candidates whose score is undefined (``-inf``) are never preferred.
    """
    result = screen(config, storage=study._storage, study_name=study.study_name,
                    images=scoring_batch(datamodule, config.score_batch), out=out)
    taken = {t.user_attrs.get(KEY_ATTR) for t in study.get_trials(deepcopy=False)
             if t.state != TrialState.FAIL or failed_on_its_own(t)}
    best = [(rank, c) for rank, c in enumerate(result.ranked, start=1)
            if math.isfinite(c.score) and c.key not in taken]
    if isinstance(study.sampler, HardwareAwareSampler):
        study.sampler.prefer([Candidate(c.params, c.key, None, {"screen/score": c.score, "screen/rank": rank})
                              for rank, c in best])
    else:
        for rank, c in best[:count]:
            study.enqueue_trial(c.params, user_attrs={"screen/score": c.score, "screen/rank": rank, KEY_ATTR: c.key},
                                skip_if_exists=True)
    return result


# ---------------------------------------------------------------------------------------------

def _open_scores(config: StudyConfig, storage: str | BaseStorage, study_name: str) -> optuna.Study:
    scores = optuna.create_study(storage=storage, study_name=scores_study_name(study_name), direction="maximize",
                                 load_if_exists=True)
    for name, value in (("hasnas/fitness", config.fitness), ("hasnas/score_batch", config.score_batch)):
        stored = scores.user_attrs.get(name)
        if stored is None:
            scores.set_user_attr(name, value)
        elif stored != value:
            raise ConfigError(f"{scores.study_name!r} holds candidates scored with {name.split('/')[1]}={stored!r}, "
                              f"the config asks for {value!r}; use a new --study-name")
    return scores


def _read(scores: optuna.Study) -> dict[str, Scored]:
    found: dict[str, Scored] = {}
    for name, record in sorted(scores.user_attrs.items()):
        if not name.startswith(_PREFIX):
            continue
        names = record["names"]
        for key, score, values, costs in record["rows"]:
            if key not in found:
                found[key] = Scored(key, -math.inf if score is None else float(score), dict(zip(names, values,
                                    strict=True)), dict(zip(_COSTS, costs, strict=True)))
    return found


def _write(scores: optuna.Study, rows: Sequence[Scored], names: list[str]) -> int:
    record = {"names": names, "rows": [
        [r.key, r.score if math.isfinite(r.score) else None, [r.params[n] for n in names], [r.costs[c] for c in _COSTS]]
        for r in rows
    ]}
    digest = hashlib.sha1(json.dumps(record["rows"], sort_keys=True).encode()).hexdigest()[:16]
    scores.set_user_attr(_PREFIX + digest, record)
    return len(rows)


def _rank(candidates: Any) -> list[Scored]:
    return sorted(candidates, key=lambda c: (-c.score, c.key))


def _seed(seed: int, stored: int) -> int:
    """A fresh draw for each resume point, reproducible from the config's seed."""
    return (seed * 1_000_003 + stored) % 2**32
