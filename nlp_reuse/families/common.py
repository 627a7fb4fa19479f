"""What the non-transformer students share: their config fields, the embedding table (which vocabulary trimming
swaps), masked pooling over the real tokens and the MLP head."""

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
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


class SmallStudentConfig(PretrainedConfig):
    """Fields every small student has; `num_hidden_layers` is the depth benchmarks and reports read."""

    def __init__(self, vocab_size: int = 30522, embedding_dim: int = 256, classifier_hidden: int = 256,
                 dropout: float = 0.1, pooling: str = "mean", num_hidden_layers: int = 0, pad_token_id: int = 0,
                 **kwargs):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.classifier_hidden = classifier_hidden
        self.dropout = dropout
        self.pooling = pooling
        self.num_hidden_layers = num_hidden_layers
        super().__init__(pad_token_id=pad_token_id, **kwargs)


class SmallStudentModel(PreTrainedModel):
    """The token embeddings and the MLP head over `pooled_features` pooled inputs; subclasses add what lies between.
    forward() accepts and ignores token_type_ids: one collated batch feeds the teacher and the student."""

    main_input_name = "input_ids"

    def __init__(self, config: SmallStudentConfig, pooled_features: int):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=config.pad_token_id)
        self.classifier = classifier_head(pooled_width(pooled_features, config.pooling), config.classifier_hidden,
                                          config.num_labels, config.dropout)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings = value

    def classify(self, states: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor | None):
        """(batch, seq, features) token states -> pooled over the real tokens -> logits (and CE with `labels`)."""
        return classification_output(self.classifier(masked_pool(states, mask, self.config.pooling)), labels)
