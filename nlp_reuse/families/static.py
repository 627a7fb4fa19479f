"""A static-embedding classifier: token vectors pooled over the text (mean, or mean and max), then an MLP. No
attention, no recurrence: one gather and a reduction per text, so it runs 100x or more faster than a transformer
(the family of Model2Vec and static Sentence Transformers), here trained on a teacher's soft labels."""

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from nlp_reuse.families.common import (
    POOLINGS,
    attention_mask_or_ones,
    classification_output,
    classifier_head,
    masked_pool,
    pooled_width,
)


class StaticEmbeddingConfig(PretrainedConfig):
    model_type = "nlp_reuse_static"

    def __init__(self, vocab_size: int = 30522, embedding_dim: int = 256, classifier_hidden: int = 0,
                 dropout: float = 0.1, pooling: str = "mean", num_hidden_layers: int = 0, pad_token_id: int = 0,
                 **kwargs):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}.")
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.classifier_hidden = classifier_hidden
        self.dropout = dropout
        self.pooling = pooling
        self.num_hidden_layers = num_hidden_layers  # no layers; benchmarks read the depth from here
        super().__init__(pad_token_id=pad_token_id, **kwargs)


class StaticEmbeddingForSequenceClassification(PreTrainedModel):
    config_class = StaticEmbeddingConfig
    base_model_prefix = "static"
    main_input_name = "input_ids"

    def __init__(self, config: StaticEmbeddingConfig):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=config.pad_token_id)
        self.classifier = classifier_head(pooled_width(config.embedding_dim, config.pooling),
                                          config.classifier_hidden, config.num_labels, config.dropout)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings = value

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None, **kwargs):
        # token_type_ids is accepted and unused: one collated batch feeds the teacher and the student.
        mask = attention_mask_or_ones(input_ids, attention_mask)
        pooled = masked_pool(self.embeddings(input_ids), mask, self.config.pooling)  # (batch, dim | 2 dim)
        return classification_output(self.classifier(pooled), labels)
