"""Training-free fitness: rank untrained candidates by their spike codes on one batch.

SAHD (SNASNet, paper.md 9.3): for every LIF population and timestep, each sample's binary spike
code; the Hamming distance of two samples normalised by the distance their firing sparsities
alone would give, ``d_SAH = 0.5 * d_H / (N (r_i (1 - r_j) + (1 - r_i) r_j))``; the kernel
``K = N - d_SAH`` averaged over populations and timesteps; the score is ``log |det K|`` (the
absolute value, as SNASNet takes it: the SAHD kernel need not be positive definite).
NASWOT (Mellor et al.) is the same with the raw Hamming distance ``K = N - d_H``. ``params``
(the number of weights) is the baseline every proxy must beat (snn.md section 7).

Guards: a population whose codes are identical for every sample (silent, saturated, or blind to the
input) carries no information and is skipped; a candidate with no informative population, or a
singular kernel (e.g. two samples with the same codes everywhere, common in nearly silent networks
at initialisation), scores ``-inf`` (the worst).
"""

from __future__ import annotations

import math

import torch

from hasnas_optuna._errors import ConfigError
from hasnas_optuna.architecture import Architecture
from hasnas_optuna.network import LIF, build_network, release_neurons

__all__ = ["FITNESSES", "score_architecture"]

FITNESSES = ("sahd", "naswot", "params")


def score_architecture(arch: Architecture, images: torch.Tensor, *, fitness: str = "sahd", seed: int = 0) -> float:
    """Score ``arch`` at initialisation on one batch of ``images`` (higher is better).

    Example:
        >>> from hasnas_optuna.architecture import Cell
        >>> cell = Cell.from_matrix("0303 0030 0003 0000")
        >>> arch = Architecture(input_shape=(1, 8, 8), num_classes=10, cell_a=cell, cell_b=cell, channels=8)
        >>> images = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(0))
        >>> score = score_architecture(arch, images)
        >>> math.isfinite(score)
        True
        >>> score_architecture(arch, images, fitness="params") == arch.to_network().params
        True
    """
    if fitness not in FITNESSES:
        raise ConfigError(f"fitness={fitness!r} is not known; use one of {', '.join(FITNESSES)}")
    if fitness == "params":
        return float(arch.to_network().params)
    if images.ndim != 4 or images.shape[0] < 2:
        raise ConfigError(f"a scoring batch needs shape [B >= 2, C, H, W], got {tuple(images.shape)}")
    torch.manual_seed(seed)
    net = build_network(arch).eval()
    batch = images.shape[0]
    kernel = torch.zeros(batch, batch, dtype=torch.float64)
    used = 0

    def hook(module: torch.nn.Module, inputs: object, output: tuple[torch.Tensor, torch.Tensor]) -> None:
        nonlocal kernel, used
        codes = output[0].reshape(batch, -1).double()  # one timestep of one population: (spikes, mem)
        if bool((codes == codes[0]).all()):
            return  # identical codes for every sample: no information
        kernel = kernel + _kernel(codes, sparsity_aware=fitness == "sahd")
        used += 1

    # hook the snntorch neuron inside each LIF population: it runs once per timestep, in multi-step
    # layers and in the step-by-step cells with backward edges alike (the readout is not an LIF)
    handles = [m.neuron.register_forward_hook(hook) for m in net.modules() if isinstance(m, LIF)]
    try:
        with torch.no_grad():
            net(images)
    finally:
        for handle in handles:
            handle.remove()
        release_neurons(net)
    if used == 0:
        return -math.inf
    sign, logdet = torch.linalg.slogdet(kernel / used)
    return float(logdet) if float(sign) != 0 and math.isfinite(float(logdet)) else -math.inf


def _kernel(codes: torch.Tensor, *, sparsity_aware: bool) -> torch.Tensor:
    """``N - d`` for binary codes ``[B, N]``; ``d`` is the (sparsity-normalised) Hamming distance."""
    n = codes.shape[1]
    # d_H(i, j) = |c_i| + |c_j| - 2 c_i . c_j: one product of 0/1 codes, exact in float32 below 2**24
    ones = codes.sum(dim=1, keepdim=True)
    hamming = ones + ones.T - 2 * (codes.float() @ codes.float().T).double()
    if not sparsity_aware:
        return n - hamming
    rate = codes.mean(dim=1, keepdim=True)
    expected = n * (rate @ (1 - rate).T + (1 - rate) @ rate.T)
    return n - 0.5 * hamming / (expected + 1e-3)
