"""Training objectives: the paper's cross-entropy on the answer, and an optional consistency term.

The paper trains with cross-entropy only; consistency is encouraged because the variants of one item
share one target. Reviewers asked for an explicit term: `consistency_divergence` measures how far
the answer-token distributions of the variants of one group are from each other (Jensen-Shannon or
symmetric KL, at the positions of the shared target, teacher-forced), in the spirit of the authors'
follow-up work on test-time consistency.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from mmr3_adapters.models import IGNORE_INDEX

DIVERGENCES = ("js", "skl")


def answer_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per row (B,): the mean over that row's answer tokens.

    Per row, then averaged over rows by the caller, so every row weighs the same whatever its answer
    length: a batch split over processes or accumulation steps then sums to the same gradient.
    """
    labels = labels.to(logits.device)
    token = F.cross_entropy(
        logits.float().transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none"
    )  # (B, T)
    n = (labels != IGNORE_INDEX).sum(dim=1).clamp(min=1)
    return token.sum(dim=1) / n


def consistency_divergence(
    logits: torch.Tensor, labels: torch.Tensor, group_ids: Sequence[str], kind: str = "js"
) -> torch.Tensor:
    """Per group with two or more rows in the batch, the mean divergence over its pairs of rows.

    Args:
        logits: (B, T, V) answer logits.
        labels: (B, T) the targets; a pair is compared at the positions both rows have a target.
        group_ids: One group id per row.
        kind: "js" (Jensen-Shannon, bounded by ln 2) or "skl" (symmetric KL, (KL(p|q) + KL(q|p)) / 2).

    Returns:
        One value per such group (G,), in the order groups first appear; empty when no group has a pair.
    """
    if kind not in DIVERGENCES:
        raise ValueError(f"consistency loss must be one of {DIVERGENCES}, got {kind!r}")
    labels = labels.to(logits.device)
    log_p = F.log_softmax(logits.float(), dim=-1)
    rows: dict[str, list[int]] = {}
    for i, group in enumerate(group_ids):
        rows.setdefault(group, []).append(i)
    values = []
    for members in rows.values():
        pairs = [(a, b) for k, a in enumerate(members) for b in members[k + 1 :]]
        if not pairs:
            continue
        per_pair = []
        for a, b in pairs:
            both = (labels[a] != IGNORE_INDEX) & (labels[b] != IGNORE_INDEX)
            if not both.any():
                continue
            per_pair.append(_divergence(log_p[a][both], log_p[b][both], kind).mean())
        if per_pair:
            values.append(torch.stack(per_pair).mean())
    return torch.stack(values) if values else logits.new_zeros(0, dtype=torch.float32)


def _divergence(log_p: torch.Tensor, log_q: torch.Tensor, kind: str) -> torch.Tensor:
    """Per position (T,) divergence of two (T, V) log-distributions."""
    if kind == "skl":
        p, q = log_p.exp(), log_q.exp()
        return 0.5 * ((p * (log_p - log_q)).sum(-1) + (q * (log_q - log_p)).sum(-1))
    log_m = torch.logsumexp(torch.stack([log_p, log_q]), dim=0) - torch.log(torch.tensor(2.0, device=log_p.device))
    kl_pm = (log_p.exp() * (log_p - log_m)).sum(-1)
    kl_qm = (log_q.exp() * (log_q - log_m)).sum(-1)
    return 0.5 * (kl_pm + kl_qm)
