"""What the non-transformer students share: masked pooling over the real tokens and the MLP head."""

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

POOLINGS = ("max", "mean", "mean_max")


def masked_pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(batch, seq, dim) -> (batch, dim) over the positions where `mask` (batch, seq) is 1; mean_max: (batch, 2 dim)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)  # (batch, seq, 1)
    mean = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)
    if pooling == "mean":
        return mean
    # Padding can never win the max; finfo.min rather than -inf keeps an all-padding row finite.
    maximum = hidden.masked_fill(weights == 0, torch.finfo(hidden.dtype).min).amax(1)
    return maximum if pooling == "max" else torch.cat([mean, maximum], dim=-1)


def pooled_width(width: int, pooling: str) -> int:
    return 2 * width if pooling == "mean_max" else width


def classifier_head(in_features: int, hidden: int, num_labels: int, dropout: float) -> nn.Sequential:
    """Dropout -> (Linear -> ReLU -> Dropout ->) Linear; `hidden` 0 is a linear head."""
    if hidden == 0:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, num_labels))
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, hidden), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden, num_labels))


def classification_output(logits: torch.Tensor, labels: torch.Tensor | None) -> SequenceClassifierOutput:
    """Cross-entropy against `labels` when given (the no-KD baseline trains through a plain Trainer)."""
    loss = None if labels is None else nn.functional.cross_entropy(logits.float(), labels)
    return SequenceClassifierOutput(loss=loss, logits=logits)


def attention_mask_or_ones(input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    return torch.ones_like(input_ids) if attention_mask is None else attention_mask
