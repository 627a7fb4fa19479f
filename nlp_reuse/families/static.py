"""A static-embedding classifier: token vectors pooled over the text (mean, or mean and max), then an MLP. No
attention, no recurrence: one gather and a reduction per text, so it runs 100x or more faster than a transformer
(the family of Model2Vec and static Sentence Transformers), here trained on a teacher's soft labels."""

import torch

from nlp_reuse.families.common import SmallStudentConfig, SmallStudentModel, attention_mask_or_ones


class StaticEmbeddingConfig(SmallStudentConfig):
    model_type = "nlp_reuse_static"

    def __init__(self, embedding_dim: int = 256, classifier_hidden: int = 0, pooling: str = "mean", **kwargs):
        kwargs.pop("num_hidden_layers", None)  # always 0 (config.json repeats it)
        super().__init__(embedding_dim=embedding_dim, classifier_hidden=classifier_hidden, pooling=pooling,
                         num_hidden_layers=0, **kwargs)


class StaticEmbeddingForSequenceClassification(SmallStudentModel):
    config_class = StaticEmbeddingConfig
    base_model_prefix = "static"

    def __init__(self, config: StaticEmbeddingConfig):
        super().__init__(config, pooled_features=config.embedding_dim)
        self.post_init()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None, **kwargs):
        mask = attention_mask_or_ones(input_ids, attention_mask)
        return self.classify(self.embeddings(input_ids), mask, labels)  # (batch, seq, dim) pooled
