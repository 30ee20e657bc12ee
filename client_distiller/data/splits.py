"""Leave-one-domain-out splits with the DomainBed protocol."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from client_distiller.data.folder import DatasetError, DomainFolder, Sample


@dataclass(frozen=True)
class Splits:
    """The four sample lists of one leave-one-domain-out experiment.

    Attributes:
        target_domain: the held-out domain.
        train: in-splits of the source domains (training data).
        val: out-splits of the source domains (training-domain validation, the ID number).
        test: in-split of the target domain (the OOD number, as DomainBed reports it).
        target_out: out-split of the target domain (unused by the protocol; kept for reports).
    """

    target_domain: str
    source_domains: list[str]
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]
    target_out: list[Sample]


def split_domain(
    samples: list[Sample], *, holdout_fraction: float, split_seed: int, domain: str
) -> tuple[list[Sample], list[Sample]]:
    """(in, out) split of one domain by a permutation seeded by (split_seed, domain name).

    The seed does not involve the training seed or the target domain, so a domain is split
    the same way in every experiment.
    """
    if not 0.0 <= holdout_fraction < 1.0:
        raise DatasetError(f"holdout fraction must be in [0, 1), got {holdout_fraction}")
    seed = int.from_bytes(
        hashlib.sha256(f"split:{split_seed}:{domain}".encode()).digest()[:8], "little"
    )
    perm = np.random.Generator(np.random.PCG64(seed)).permutation(len(samples))
    n_out = int(len(samples) * holdout_fraction)  # DomainBed rounds down
    out = [samples[i] for i in sorted(perm[:n_out])]
    inn = [samples[i] for i in sorted(perm[n_out:])]
    return inn, out


def make_splits(
    dataset: DomainFolder, target_domain: str, *, holdout_fraction: float = 0.2, split_seed: int = 0
) -> Splits:
    """Leave ``target_domain`` out: train/val from the other domains, test from it.

    Raises:
        DatasetError: unknown target domain, or no source domain left.
    """
    dataset.check_domain(target_domain)
    sources = [d for d in dataset.domains if d != target_domain]
    if not sources:
        raise DatasetError("need at least two domains for leave-one-domain-out")
    train: list[Sample] = []
    val: list[Sample] = []
    test: list[Sample] = []
    target_out: list[Sample] = []
    for dom in dataset.domains:
        inn, out = split_domain(
            dataset.domain_samples(dom),
            holdout_fraction=holdout_fraction,
            split_seed=split_seed,
            domain=dom,
        )
        if dom == target_domain:
            test, target_out = inn, out
        else:
            train += inn
            val += out
    return Splits(target_domain, sources, train, val, test, target_out)
