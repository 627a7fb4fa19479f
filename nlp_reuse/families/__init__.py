"""Student families beyond a truncated teacher, registered with the Auto classes so that Trainer, save/load,
`pipeline("text-classification")` (after `import nlp_reuse`), ONNX export and the Hub folder serve them as they
serve BERT students. Both use the teacher's tokenizer."""

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedModel

from nlp_reuse.errors import ModelError, format_error
from nlp_reuse.families.bilstm import BiLSTMConfig, BiLSTMForSequenceClassification
from nlp_reuse.families.embeddings import encoder_static_embeddings, pca_project, teacher_input_embeddings
from nlp_reuse.families.static import StaticEmbeddingConfig, StaticEmbeddingForSequenceClassification

AutoConfig.register(BiLSTMConfig.model_type, BiLSTMConfig)
AutoConfig.register(StaticEmbeddingConfig.model_type, StaticEmbeddingConfig)
AutoModelForSequenceClassification.register(BiLSTMConfig, BiLSTMForSequenceClassification)
AutoModelForSequenceClassification.register(StaticEmbeddingConfig, StaticEmbeddingForSequenceClassification)

STUDENT_TYPES = ("transformer", "bilstm", "static")
FAMILIES = {"bilstm": (BiLSTMConfig, BiLSTMForSequenceClassification),
            "static": (StaticEmbeddingConfig, StaticEmbeddingForSequenceClassification)}
EMBEDDING_INITS = ("teacher", "encoder", "random")
_DEFAULT_POOLING = {"bilstm": "max", "static": "mean"}


def is_student_family(model: PreTrainedModel) -> bool:
    return isinstance(model, tuple(model_class for _, model_class in FAMILIES.values()))


def initial_embeddings(embedding_init: str, teacher: PreTrainedModel, tokenizer, dim: int) -> torch.Tensor | None:
    """(vocab, dim) start vectors for `embedding_init`, or None for random ones."""
    if embedding_init not in EMBEDDING_INITS:
        raise ModelError(format_error("Unknown embedding initialisation.", f"one of {EMBEDDING_INITS}",
                                      repr(embedding_init), "pass --student_embedding_init teacher"))
    if embedding_init == "random":
        return None
    if embedding_init == "teacher":
        return teacher_input_embeddings(teacher, dim)
    return encoder_static_embeddings(teacher, tokenizer, dim)


def build_student_family(student_type: str, teacher: PreTrainedModel, tokenizer, *, embedding_dim: int,
                         hidden_size: int = 256, embedding_init: str = "teacher", classifier_hidden: int = 256,
                         pooling: str | None = None, dropout: float = 0.1,
                         vectors: torch.Tensor | None = None) -> PreTrainedModel:
    """A `student_type` student for the teacher's labels and vocabulary (seed first: `transformers.set_seed`).
    `vectors`: `initial_embeddings(...)` computed once by a caller that builds the same student twice (the no-KD
    baseline), instead of running the teacher's encoder over the vocabulary again."""
    if student_type not in FAMILIES:
        raise ModelError(format_error("Unknown student family.", f"one of {sorted(FAMILIES)}", repr(student_type),
                                      "pass --student_type bilstm or static"))
    if vectors is None:
        vectors = initial_embeddings(embedding_init, teacher, tokenizer, embedding_dim)
    config_class, model_class = FAMILIES[student_type]
    sizes = {"hidden_size": hidden_size} if student_type == "bilstm" else {}
    config = config_class(
        vocab_size=teacher.config.vocab_size, embedding_dim=embedding_dim, classifier_hidden=classifier_hidden,
        dropout=dropout, pooling=pooling or _DEFAULT_POOLING[student_type], pad_token_id=tokenizer.pad_token_id,
        id2label=dict(teacher.config.id2label), label2id=dict(teacher.config.label2id), **sizes)
    student = model_class(config)
    if vectors is not None:
        student.get_input_embeddings().weight.data.copy_(vectors)
    what = f"{student_type}(embedding={embedding_init}:{embedding_dim}"
    what += f", lstm={hidden_size}x2" if student_type == "bilstm" else ""
    student.config.nlp_reuse_init = f"{what}, pooling={config.pooling}, mlp={classifier_hidden})"
    return student.train()


__all__ = [
    "EMBEDDING_INITS", "FAMILIES", "STUDENT_TYPES", "BiLSTMConfig", "BiLSTMForSequenceClassification",
    "StaticEmbeddingConfig", "StaticEmbeddingForSequenceClassification", "build_student_family",
    "encoder_static_embeddings", "initial_embeddings", "is_student_family", "pca_project", "teacher_input_embeddings",
]
