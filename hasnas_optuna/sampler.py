"""A hardware-aware sampler: any Optuna sampler, filtered by the CIM cost model before a trial runs.

Plain constrained samplers learn about a budget only after a trial has been spent on breaking it,
and NSGA-II re-proposes configurations it has already evaluated (optuna.md sections 2 and 9).
:class:`HardwareAwareSampler` wraps a base sampler by composition (so NSGA-II keeps its own
storage keys and generations) and, for each trial:

1. asks the base sampler for a complete parameter set (``sample_relative``, then
   ``sample_independent`` for what the base leaves out, e.g. in NSGA-II's first generation);
2. decodes it into an architecture (and chip), costs it analytically (about a millisecond) at the chip's
   prior spike rates, and rejects it when a budget known before training is broken or when the
   same architecture (and chip) is already in the study, RUNNING trials of other workers included;
3. after ``max_tries`` rejected proposals, falls back to uniform random proposals from the space,
   and after ``fallback_tries`` more, **repairs** the last proposal with the space's ``cheapest``
   (for :class:`~hasnas_optuna.search_space.SearchSpace`: every width, depth and
   precision knob is moved to its cheapest choice (smallest channels, hidden width and timesteps;
   most bits per cell, fewest weight and ADC bits, crossbar size unchanged) and the cheapest
   cell ops are kept); if even that breaks a budget or is a duplicate, the proposal is handed out
   as it is and the objective's own early pruning completes it as infeasible.

Given a ranked list of candidates (:meth:`HardwareAwareSampler.prefer`, used by the
training-free mode), it hands those out first, best first, skipping any already in the study;
:meth:`HardwareAwareSampler.draw` draws many distinct feasible candidates at once, outside any
trial.

What happened is recorded per trial as user attributes ``sampler/outcome`` (``ranked``, ``base``,
``fallback``, ``repaired`` or ``unresolved``), ``sampler/rejected`` and ``sampler/key``. The key is
written (claimed) the moment a sample is chosen, so workers sharing a storage see each other's
choices, and a claim/confirm step settles two workers picking the same architecture at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from hasnas_optuna._errors import ConfigError
from hasnas_optuna._trial_writes import write_user_attrs
from hasnas_optuna.cim import Budgets, CostReport, Hardware, Network, estimate_cost

__all__ = ["Candidate", "CandidateSpace", "CostFunction", "HardwareAwareSampler"]

KEY_ATTR = "sampler/key"
CONFIRMED_ATTR = "sampler/confirmed"
_CLAIMS = 8
"""How often a trial re-chooses after losing an architecture to a concurrent worker."""


@runtime_checkable
class CandidateSpace(Protocol):
    """What :class:`HardwareAwareSampler` needs of a search space.

    :class:`~hasnas_optuna.search_space.SearchSpace` is one; a user's own space (other cells,
    layouts, ops) plugs in by providing these five methods.
    """

    def distributions(self) -> dict[str, BaseDistribution]:
        """Every parameter the space samples, and its distribution (the same for every trial)."""

    def network(self, params: Mapping[str, Any]) -> Network:
        """The costable layer list of a complete parameter set."""

    def chip(self, params: Mapping[str, Any], base: Hardware) -> Hardware:
        """The chip of a parameter set (``base`` when the space searches no chip knobs)."""

    def key(self, params: Mapping[str, Any]) -> str:
        """The identity of a parameter set: equal keys are the same network on the same chip."""

    def cheapest(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """A cheaper variant of ``params`` to try when nothing else fits (``dict(params)`` if none)."""


CostFunction = Callable[[Network, Hardware], Any]
"""Costs a network on a chip: :func:`~hasnas_optuna.cim.estimate_cost`, or a user's model returning a
report with the metrics' attributes (``memory_params``, ``area_mm2``, ``latency_ms``, ``energy_uj``
and those of any registered metric)."""


@dataclass(frozen=True)
class Candidate:
    """A complete parameter set with its identity and its costs at the chip's prior spike rates.

    ``attrs`` are user attributes the sampler writes on the trial that receives it (e.g. its rank).
    """

    params: dict[str, Any]
    key: str
    report: CostReport | None = None
    attrs: Mapping[str, Any] = field(default_factory=dict)


class HardwareAwareSampler(BaseSampler):
    """Wrap ``base`` so that it hands out only new architectures that fit the budgets.

    The objective must suggest the search space's parameters with
    :func:`~hasnas_optuna.search_space.suggest_architecture` (and
    :func:`~hasnas_optuna.search_space.suggest_hardware` when the space searches chip knobs).
    Other parameters the objective suggests go to the base sampler unchanged.

    Args:
        space: The search space (the same object the objective samples from): a
            :class:`~hasnas_optuna.search_space.SearchSpace` or any :class:`CandidateSpace`.
        hardware: The base chip; the space's hardware knobs, if any, apply on top of it.
        budgets: Budgets checked before a trial runs (memory, area, latency, and energy at the
            chip's prior spike rates; any registered metric).
        cost: The cost model, :func:`~hasnas_optuna.cim.estimate_cost` by default.
        base: The sampler whose proposals are filtered; NSGA-II by default.
        max_tries: Base proposals tried before falling back to random ones.
        fallback_tries: Random proposals tried before repairing.
        deduplicate: Refuse architectures (and chips) already in the study.
        seed: Seed of the fallback's random proposals (the base has its own).

    Example:
        >>> import optuna
        >>> from hasnas_optuna import SearchSpace, suggest_architecture
        >>> from hasnas_optuna.cim import Budgets, estimate_cost, load_hardware
        >>> space, chip, budgets = SearchSpace(), load_hardware(), Budgets(memory=5000)
        >>> sampler = HardwareAwareSampler(space, hardware=chip, budgets=budgets, seed=0)
        >>> study = optuna.create_study(sampler=sampler)
        >>> study.optimize(lambda t: suggest_architecture(t, space).to_network().params, n_trials=5)
        >>> all(t.value <= 5000 for t in study.trials)
        True
    """

    def __init__(
        self,
        space: CandidateSpace,
        *,
        hardware: Hardware,
        budgets: Budgets,
        cost: CostFunction = estimate_cost,
        base: BaseSampler | None = None,
        max_tries: int = 64,
        fallback_tries: int = 256,
        deduplicate: bool = True,
        seed: int | None = None,
    ) -> None:
        if not isinstance(space, CandidateSpace):
            missing = [m for m in ("distributions", "network", "chip", "key", "cheapest") if not hasattr(space, m)]
            raise ConfigError(f"space must be a SearchSpace or provide {', '.join(missing)} (CandidateSpace); "
                              f"got {type(space).__name__}")
        if not callable(cost):
            raise ConfigError(f"cost must be a function (network, chip) -> report, got {cost!r}")
        if not isinstance(budgets, Budgets):
            raise ConfigError(f"budgets must be a Budgets, got {type(budgets).__name__}")
        for name, value in (("max_tries", max_tries), ("fallback_tries", fallback_tries)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r} must be an integer >= 1")
        if base is not None and not isinstance(base, BaseSampler):
            raise ConfigError(f"base must be an Optuna sampler, got {type(base).__name__}")
        check_chip = getattr(space, "check_chip", None)
        if check_chip is not None:
            check_chip(hardware)
        self.space = space
        self.cost = cost
        self.hardware = hardware
        self.budgets = budgets
        self.base = base if base is not None else optuna.samplers.NSGAIISampler(seed=seed)
        self.max_tries = max_tries
        self.fallback_tries = fallback_tries
        self.deduplicate = deduplicate
        self._rng = np.random.RandomState(seed)
        self._distributions = space.distributions()
        self._lock = threading.Lock()
        self._keys: dict[int, str | None] = {}  # trial id -> key, for finished trials
        self._preferred: list[Candidate] = []
        self._ranked_attrs: dict[str, dict[str, Any]] = {}
        self._base_space: dict[str, BaseDistribution] | None = None  # the base's relative space, per trial
        self._others: dict[str, BaseDistribution] = {}  # parameters outside the space, per trial
        self._extra: dict[str, Any] | None = None  # the base's first values for them, per trial

    # -- Optuna's sampler interface -------------------------------------------------------------

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        """The space's parameters (chosen together, by this sampler), and the base's relative space
        for any other parameter the objective suggests."""
        space = {name: dist for name, dist in self._distributions.items() if not dist.single()}
        for name, dist in self.base.infer_relative_search_space(study, trial).items():
            space.setdefault(name, dist)
        return space

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """The space's parameters in ``search_space`` from one chosen candidate; the others from the base.

        Returns only names in ``search_space`` (so it works inside Optuna's ``PartialFixedSampler``;
        a parameter of the space fixed there is chosen without knowing its fixed value, so the
        budgets are checked with the value the candidate had). The base proposes the other
        parameters in the same ``sample_relative`` call as the space's, as one joint sample.
        """
        others = {name: dist for name, dist in search_space.items() if name not in self._distributions}
        if len(others) == len(search_space):
            params = self.base.sample_relative(study, trial, others) if others else {}
        else:
            params = self._claim(study, trial, others)
        return {name: value for name, value in params.items() if name in search_space}

    def _claim(self, study: Study, trial: FrozenTrial, others: dict[str, BaseDistribution]) -> dict[str, Any]:
        """Choose the trial's candidate and claim its key in the storage (see the module docstring);
        with the base's values for ``others``, the parameters outside the space."""
        storage = study._storage
        with self._lock:
            self._base_space = None
            self._others, self._extra = others, None
            lost: set[str] = set()
            for attempt in range(_CLAIMS):
                seen = (self._seen_keys(study, trial) | lost) if self.deduplicate else set()
                # after half the attempts, leave the ranked list: workers that keep colliding on the
                # same ranked candidate go on with (different) random proposals
                params, outcome, rejected, key = self._choose(study, trial, seen, ranked=attempt < _CLAIMS // 2)
                storage.set_trial_user_attr(trial._trial_id, KEY_ATTR, key)
                if not self.deduplicate or outcome == "unresolved":
                    break
                if self._lost_claim(study, trial, key, confirmed=False):
                    lost.add(key)
                    continue
                storage.set_trial_user_attr(trial._trial_id, CONFIRMED_ATTR, True)
                if not self._lost_claim(study, trial, key, confirmed=True):
                    break
                storage.set_trial_user_attr(trial._trial_id, CONFIRMED_ATTR, False)
                lost.add(key)
            write_user_attrs(storage, trial._trial_id, {
                CONFIRMED_ATTR: True, "sampler/outcome": outcome, "sampler/rejected": rejected,
                **(self._ranked_attrs.get(key, {}) if outcome == "ranked" else {})})
            if others and outcome != "base":  # the base's first proposal of this trial, or a new one
                extra = self._extra if self._extra is not None else self._from_base(study, trial)
                params.update((name, extra[name]) for name in others if name in extra)
        return params

    # -- candidates outside trials ----------------------------------------------------------------

    def prefer(self, candidates: Sequence[Candidate]) -> None:
        """Hand out ``candidates`` first, in this order, before asking the base sampler.

        Each trial gets the first candidate whose architecture is not yet in the study (RUNNING
        trials of other workers included, as for any proposal); it records ``sampler/outcome =
        "ranked"`` and the candidate's ``attrs``. Candidates are assumed to fit the budgets (e.g.
        from :meth:`draw`). Once all are taken, the base sampler proposes as usual.

        Example:
            >>> import optuna
            >>> from hasnas_optuna import SearchSpace, suggest_architecture
            >>> from hasnas_optuna.cim import Budgets, load_hardware
            >>> space = SearchSpace()
            >>> sampler = HardwareAwareSampler(space, hardware=load_hardware(), budgets=Budgets(memory=5000), seed=0)
            >>> picks = sampler.draw(2, seed=1)
            >>> sampler.prefer(picks)
            >>> study = optuna.create_study(sampler=sampler)
            >>> study.optimize(lambda t: suggest_architecture(t, space).to_network().params, n_trials=3)
            >>> [t.user_attrs["sampler/outcome"] for t in study.trials]
            ['ranked', 'ranked', 'base']
            >>> [t.user_attrs["sampler/key"] for t in study.trials[:2]] == [c.key for c in picks]
            True
        """
        if not self.deduplicate:
            raise ConfigError("prefer() needs deduplicate=True: it skips candidates already in the study by their key")
        with self._lock:
            self._preferred = list(candidates)
            self._ranked_attrs = {c.key: dict(c.attrs) for c in self._preferred}

    def draw(self, count: int, *, exclude: Collection[str] = (), seed: int | None = None,
             max_tries: int | None = None) -> list[Candidate]:
        """Up to ``count`` distinct candidates drawn uniformly at random that meet the budgets.

        This is the SNASNet/HASNAS candidate generator (paper.md 5): random architectures, each
        costed analytically (about a millisecond) and kept only when every budget holds and its
        key is new (not in ``exclude``, not drawn before). It runs outside any trial, so it costs
        no storage writes. Stops after ``max_tries`` proposals (by default ``count`` times
        ``max_tries + fallback_tries``), so a space with few feasible architectures returns fewer.

        Example:
            >>> from hasnas_optuna import SearchSpace
            >>> from hasnas_optuna.cim import Budgets, load_hardware
            >>> sampler = HardwareAwareSampler(SearchSpace(), hardware=load_hardware(), budgets=Budgets(memory=5000))
            >>> picks = sampler.draw(5, seed=0)
            >>> len(picks), len({c.key for c in picks}), all(c.report.memory_params <= 5000 for c in picks)
            (5, 5, True)
        """
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ConfigError(f"count={count!r} must be an integer >= 0")
        limit = count * (self.max_tries + self.fallback_tries) if max_tries is None else max_tries
        rng = np.random.RandomState(seed)
        seen = set(exclude)
        picks: list[Candidate] = []
        for _ in range(limit):
            if len(picks) == count:
                break
            params = self._random(rng)
            key = self.key_of(params)
            if key in seen:
                continue
            report = self._cost(params)
            if self._fits(report):
                seen.add(key)
                picks.append(Candidate(params, key, report))
        return picks

    def _lost_claim(self, study: Study, trial: FrozenTrial, key: str, *, confirmed: bool) -> bool:
        """Whether another worker's trial holds ``key`` too and keeps it.

        Each trial writes its key before it reads the others' (so of two overlapping claims the
        later reader sees the earlier write), then checks twice. Before confirming, it yields to a
        confirmed claim and to any claim of a trial created before it; after writing its
        confirmation, it yields to any claim of a trial created before it that still holds the key.
        Two trials can then never both keep a key; at worst both yield and choose again.
        """
        for t in study._storage.get_all_trials(study._study_id, deepcopy=False):
            if t._trial_id == trial._trial_id or t.state == TrialState.FAIL or t.user_attrs.get(KEY_ATTR) != key:
                continue
            if t._trial_id < trial._trial_id or (not confirmed and t.user_attrs.get(CONFIRMED_ATTR)):
                return True
        return False

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self.base.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(
        self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()
        self._rng.seed()

    # -- choosing -------------------------------------------------------------------------------

    def _choose(self, study: Study, trial: FrozenTrial, seen: set[str], *, ranked: bool = True
                ) -> tuple[dict[str, Any], str, int, str]:
        for candidate in self._preferred if ranked else ():
            if candidate.key not in seen:
                return dict(candidate.params), "ranked", 0, candidate.key
        last: dict[str, Any] = {}
        rejected = 0
        for source, tries in (("base", self.max_tries), ("fallback", self.fallback_tries)):
            for _ in range(tries):
                last = self._from_base(study, trial) if source == "base" else self._random()
                key, feasible = self.evaluate(last)
                if feasible and key not in seen:
                    return last, source, rejected, key
                rejected += 1
        repaired = self.repair(last)
        key, feasible = self.evaluate(repaired)
        if feasible and key not in seen:
            return repaired, "repaired", rejected, key
        key, _ = self.evaluate(last)
        return last, "unresolved", rejected, key

    def _from_base(self, study: Study, trial: FrozenTrial) -> dict[str, Any]:
        if self._base_space is None:  # once per trial: it reads every trial of the study
            space = self.base.infer_relative_search_space(study, trial)
            self._base_space = {k: v for k, v in space.items()
                                if (k in self._distributions and not v.single()) or k in self._others}
        relative_space = self._base_space
        # called even with an empty space: GA samplers assign the trial's generation here; one
        # space per trial, others included (Optuna's GPSampler caches per space)
        params = dict(self.base.sample_relative(study, trial, relative_space))
        if self._extra is None:
            self._extra = {name: params[name] for name in self._others if name in params}
        for name, dist in self._distributions.items():
            if dist.single():  # as Optuna's Trial does: a one-value range is never asked of a sampler
                params[name] = _single_value(dist)
            elif name not in params or not _within(dist, params[name]):
                params[name] = self.base.sample_independent(study, trial, name, dist)
        return params

    def _random(self, rng: np.random.RandomState | None = None) -> dict[str, Any]:
        rng = self._rng if rng is None else rng
        return {name: _uniform(dist, rng) for name, dist in self._distributions.items()}

    def repair(self, params: dict[str, Any]) -> dict[str, Any]:
        """The cheapest variant of ``params``: the space's own (see the module docstring)."""
        return dict(self.space.cheapest(params))

    def key_of(self, params: dict[str, Any]) -> str:
        """Identity of a parameter set (the space's key: the architecture's, plus the chip knobs)."""
        return self.space.key(params)

    def evaluate(self, params: dict[str, Any]) -> tuple[str, bool]:
        """``(key, feasible)``: the identity and whether every budget known before training holds."""
        key = self.key_of(params)
        if not self.budgets:
            return key, True
        return key, self._fits(self._cost(params))

    def _cost(self, params: dict[str, Any]) -> Any:
        return self.cost(self.space.network(params), self.space.chip(params, self.hardware))

    def _fits(self, report: Any) -> bool:
        return all(slack <= 0 for _, _, _, slack in self.budgets.check(report))

    def _seen_keys(self, study: Study, current: FrozenTrial) -> set[str]:
        seen: set[str] = set()
        for t in study._storage.get_all_trials(study._study_id, deepcopy=False):
            if t._trial_id == current._trial_id or (t.state == TrialState.FAIL and not failed_on_its_own(t)):
                continue  # a failed architecture may be retried (crash recovery)
            key = t.user_attrs.get(KEY_ATTR)
            if key is None and t.state.is_finished():
                key = self._keys.get(t._trial_id)
                if key is None and t._trial_id not in self._keys:
                    key = self._key_from_params(t.params)
                    self._keys[t._trial_id] = key
            if key is not None:
                seen.add(key)
        return seen

    def _key_from_params(self, params: dict[str, Any]) -> str | None:
        if any(name not in params for name in self._distributions):
            return None  # not sampled from this space (e.g. another objective)
        try:
            return self.key_of(params)
        except ConfigError:
            return None


def failed_on_its_own(trial: FrozenTrial) -> bool:
    """Whether a FAILED trial failed because of its network (diverged, out of memory: status ``failed: ...``).

    Such an architecture is not proposed again. Other failures (a killed worker, Ctrl-C, an
    unexpected error) leave it free: it may run again, and crash retries are queued by the study.
    """
    return trial.state == TrialState.FAIL and str(trial.user_attrs.get("status", "")).startswith("failed")


def _single_value(dist: BaseDistribution) -> Any:
    """The one value of a single-valued distribution, in its own type."""
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[0]
    return int(dist.low) if isinstance(dist, IntDistribution) else float(dist.low)  # type: ignore[attr-defined]


def _uniform(dist: BaseDistribution, rng: np.random.RandomState) -> Any:
    """A uniform draw from ``dist`` (log-uniform for log ranges), in the distribution's own type and grid."""
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[rng.randint(len(dist.choices))]
    if dist.single():
        return _single_value(dist)
    if isinstance(dist, IntDistribution):
        if dist.log:
            return int(min(dist.high, max(dist.low, round(np.exp(rng.uniform(np.log(dist.low), np.log(dist.high)))))))
        return int(dist.low + dist.step * rng.randint((dist.high - dist.low) // dist.step + 1))
    assert isinstance(dist, FloatDistribution)
    if dist.log:
        return float(np.exp(rng.uniform(np.log(dist.low), np.log(dist.high))))
    if dist.step is not None:
        return float(min(dist.high, dist.low + dist.step * rng.randint(round((dist.high - dist.low) / dist.step) + 1)))
    return float(rng.uniform(dist.low, dist.high))


def _within(dist: BaseDistribution, value: Any) -> bool:
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False
