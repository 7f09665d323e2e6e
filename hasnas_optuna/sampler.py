"""A hardware-aware sampler: any Optuna sampler, filtered by the CIM cost model before a trial runs.

Plain constrained samplers learn about a budget only after a trial has been spent on breaking it,
and NSGA-II re-proposes configurations it has already evaluated (optuna.md sections 2 and 9).
:class:`HardwareAwareSampler` wraps a base sampler by composition (so NSGA-II keeps its own
storage keys and generations) and, for each trial:

1. asks the base sampler for a complete parameter set (``sample_relative``, then
   ``sample_independent`` for what the base leaves out, e.g. in NSGA-II's first generation);
2. decodes it into an architecture (and chip), costs it analytically (microseconds) at the chip's
   prior spike rates, and rejects it when a budget known before training is broken or when the
   same architecture (and chip) is already in the study, RUNNING trials of other workers included;
3. after ``max_tries`` rejected proposals, falls back to uniform random proposals from the space,
   and after ``fallback_tries`` more, **repairs** the last proposal: every width, depth and
   precision knob is moved to its cheapest choice (smallest channels, hidden width and timesteps;
   most bits per cell, fewest weight and ADC bits, crossbar size unchanged) and the cheapest
   cell ops are kept; if even that breaks a budget or is a duplicate, the proposal is handed out
   as it is and the objective's own early pruning completes it as infeasible.

What happened is recorded per trial as user attributes ``sampler/outcome`` (``base``,
``fallback``, ``repaired`` or ``unresolved``), ``sampler/rejected`` and ``sampler/key``. The key is
written (claimed) the moment a sample is chosen, so workers sharing a storage see each other's
choices, and a claim/confirm step settles two workers picking the same architecture at once.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.samplers import BaseSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from hasnas_optuna._errors import ConfigError
from hasnas_optuna.cim import Budgets, Hardware, estimate_cost
from hasnas_optuna.search_space import SearchSpace, architecture_from_params, hardware_from_params

__all__ = ["HardwareAwareSampler"]

KEY_ATTR = "sampler/key"
CONFIRMED_ATTR = "sampler/confirmed"
_CLAIMS = 8
"""How often a trial re-chooses after losing an architecture to a concurrent worker."""
_CHEAP_OPS = ("zero", "skip", "avgpool3x3", "conv1x1", "conv3x3")
"""Edge ops from cheapest to costliest on a crossbar (no weights first)."""


class HardwareAwareSampler(BaseSampler):
    """Wrap ``base`` so that it hands out only new architectures that fit the budgets.

    The objective must suggest the search space's parameters with
    :func:`~hasnas_optuna.search_space.suggest_architecture` (and
    :func:`~hasnas_optuna.search_space.suggest_hardware` when the space searches chip knobs).
    Other parameters the objective suggests go to the base sampler unchanged.

    Args:
        space: The search space (the same object the objective samples from).
        hardware: The base chip; the space's hardware knobs, if any, apply on top of it.
        budgets: Budgets checked before a trial runs (memory, area, latency, and energy at the
            chip's prior spike rates).
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
        space: SearchSpace,
        *,
        hardware: Hardware,
        budgets: Budgets,
        base: BaseSampler | None = None,
        max_tries: int = 64,
        fallback_tries: int = 256,
        deduplicate: bool = True,
        seed: int | None = None,
    ) -> None:
        if not isinstance(space, SearchSpace):
            raise ConfigError(f"space must be a SearchSpace, got {type(space).__name__}")
        if not isinstance(budgets, Budgets):
            raise ConfigError(f"budgets must be a Budgets, got {type(budgets).__name__}")
        for name, value in (("max_tries", max_tries), ("fallback_tries", fallback_tries)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}={value!r} must be an integer >= 1")
        if base is not None and not isinstance(base, BaseSampler):
            raise ConfigError(f"base must be an Optuna sampler, got {type(base).__name__}")
        if space.hardware is not None:
            space.hardware.check(hardware)
        self.space = space
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

    # -- Optuna's sampler interface -------------------------------------------------------------

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(self._distributions)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        storage = study._storage
        with self._lock:
            lost: set[str] = set()
            for _ in range(_CLAIMS):
                seen = (self._seen_keys(study, trial) | lost) if self.deduplicate else set()
                params, outcome, rejected, key = self._choose(study, trial, seen)
                storage.set_trial_user_attr(trial._trial_id, KEY_ATTR, key)
                if not self.deduplicate or outcome == "unresolved" or not self._lost_claim(study, trial, key):
                    break
                lost.add(key)
            storage.set_trial_user_attr(trial._trial_id, CONFIRMED_ATTR, True)
            storage.set_trial_user_attr(trial._trial_id, "sampler/outcome", outcome)
            storage.set_trial_user_attr(trial._trial_id, "sampler/rejected", rejected)
        return params

    def _lost_claim(self, study: Study, trial: FrozenTrial, key: str) -> bool:
        """Whether a concurrent worker's trial holds ``key`` too and keeps it.

        A claim (the key written) becomes confirmed once checked. A trial loses to a confirmed
        claim, and to an unconfirmed one of a trial created before it; so of two workers that pick
        the same architecture at the same moment exactly one keeps it.
        """
        for t in study._storage.get_all_trials(study._study_id, deepcopy=False):
            if t._trial_id == trial._trial_id or t.state == TrialState.FAIL or t.user_attrs.get(KEY_ATTR) != key:
                continue
            if t.user_attrs.get(CONFIRMED_ATTR) or t._trial_id < trial._trial_id:
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

    def _choose(self, study: Study, trial: FrozenTrial, seen: set[str]) -> tuple[dict[str, Any], str, int, str]:
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
        relative_space = self.base.infer_relative_search_space(study, trial)
        relative_space = {k: v for k, v in relative_space.items() if k in self._distributions}
        # called even with an empty space: GA samplers assign the trial's generation here
        params = dict(self.base.sample_relative(study, trial, relative_space))
        for name, dist in self._distributions.items():
            if name not in params or not _within(dist, params[name]):
                params[name] = self.base.sample_independent(study, trial, name, dist)
        return params

    def _random(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for name, dist in self._distributions.items():
            if isinstance(dist, CategoricalDistribution):
                params[name] = dist.choices[self._rng.randint(len(dist.choices))]
            else:
                low, high = dist.low, dist.high  # type: ignore[attr-defined]
                if getattr(dist, "log", False):
                    params[name] = float(np.exp(self._rng.uniform(np.log(low), np.log(high))))
                else:
                    params[name] = float(self._rng.uniform(low, high))
        return params

    def repair(self, params: dict[str, Any]) -> dict[str, Any]:
        """The cheapest variant of ``params`` (see the module docstring)."""
        fixed = dict(params)
        for name, dist in self._distributions.items():
            if not isinstance(dist, CategoricalDistribution):
                continue
            choices = list(dist.choices)
            short = name.split("/")[-1]
            if short in ("channels", "hidden_features", "timesteps", "weight_bits", "adc_bits"):
                fixed[name] = min(choices, key=_number)
            elif short == "bits_per_cell":
                fixed[name] = max(choices, key=_number)
            elif name.startswith("arch/") and name.rsplit("/", 1)[-1].startswith("e") and "_dir" not in name:
                current = _CHEAP_OPS.index(fixed[name]) if fixed[name] in _CHEAP_OPS else len(_CHEAP_OPS)
                cheaper = [op for op in choices if _CHEAP_OPS.index(op) <= current and op != "zero"]
                fixed[name] = cheaper[0] if cheaper else fixed[name]
        return fixed

    def key_of(self, params: dict[str, Any]) -> str:
        """Identity of a parameter set: the decoded architecture's key, plus the chip knobs."""
        key = architecture_from_params(params, self.space).key()
        if self.space.hardware is not None:
            key += "|" + ",".join(f"{k}={v}" for k, v in sorted(params.items()) if k.startswith("hw/"))
        return key

    def evaluate(self, params: dict[str, Any]) -> tuple[str, bool]:
        """``(key, feasible)``: the identity and whether every budget known before training holds."""
        key = self.key_of(params)
        if not self.budgets.items():
            return key, True
        chip = self.hardware
        if self.space.hardware is not None:
            chip = hardware_from_params(params, self.space, self.hardware)
        report = estimate_cost(architecture_from_params(params, self.space).to_network(), chip)
        return key, all(slack <= 0 for _, _, _, slack in self.budgets.check(report))

    def _seen_keys(self, study: Study, current: FrozenTrial) -> set[str]:
        seen: set[str] = set()
        for t in study._storage.get_all_trials(study._study_id, deepcopy=False):
            if t._trial_id == current._trial_id or t.state == TrialState.FAIL:
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


def _number(value: Any) -> float:
    return float(value)


def _within(dist: BaseDistribution, value: Any) -> bool:
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False
