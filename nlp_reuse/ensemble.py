"""Several teachers as one (multi-teacher distillation): their soft targets averaged, weighted, into one teacher.

`TeacherEnsemble` is an `nn.Module` whose logits are the ensemble's, so every consumer of a teacher (the
`DistillationTrainer`, the teacher-logit cache and its fingerprint, the test measurement) serves an ensemble
unchanged: the cache holds the ensemble's logits, computed once, and training never runs the teachers again.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from nlp_reuse.errors import ConfigError, ModelError, format_error
from nlp_reuse.evaluation import classification_metrics, size_on_disk_mb, torch_latency_ms
from nlp_reuse.modeling import count_parameters, load_teacher, load_tokenizer, num_layers
from nlp_reuse.predict import predict_logits
from nlp_reuse.report import TEST_METRICS, ModelEntry

# How the teachers' logits combine, per soft-target loss (--kd_loss); the id is a buffer, so part of the cache key.
COMBINATIONS = {"kl": 0, "mse": 1}


def ensemble_logits(logits: torch.Tensor, weights: torch.Tensor, temperature: float,
                    kd_loss: str = "kl") -> torch.Tensor:
    """One set of logits from teachers' `logits` (teachers, batch, labels) and `weights` (teachers,), summing to 1.

    kl: `T * log(sum_i w_i softmax(z_i / T))`, the logits whose tempered softmax is exactly the weighted average
    of the teachers' tempered distributions (the soft targets of an ensemble, Hinton et al. 2015; MT-DNN KD, Liu et
    al. 2019), so `kd_kl_loss` at temperature T learns that average. mse: the weighted average of the raw logits
    `sum_i w_i z_i`, the target of logit regression (Tang et al. 2019), which `--temperature` does not touch.
    """
    weights = weights.to(device=logits.device, dtype=torch.float32)
    logits = logits.float()
    if kd_loss == "mse":
        return torch.einsum("t,tbk->bk", weights, logits)
    log_p = torch.log_softmax(logits / temperature, dim=-1)  # (teachers, batch, labels)
    return temperature * torch.logsumexp(log_p + weights.log()[:, None, None], dim=0)  # (batch, labels)


def normalised_weights(weights: list[float] | None, count: int) -> list[float]:
    """`weights` scaled to sum to 1 (uniform when None); one positive weight per teacher, else a ModelError."""
    if weights is None:
        return [1.0 / count] * count
    if len(weights) != count or any(w <= 0 for w in weights):
        raise ModelError(format_error(
            "--teacher_weights does not fit the teachers.",
            f"{count} positive weights, one per --teacher_model_name_or_path, in the same order",
            f"{len(weights)} weights {weights}", "give one weight > 0 per teacher (they are scaled to sum to 1), "
            "or drop --teacher_weights for equal weights"))
    return [w / sum(weights) for w in weights]


def check_same_labels(teachers: list[PreTrainedModel], names: list[str]) -> list[str]:
    """The label names every teacher predicts, in one order (their logits are averaged index by index)."""
    labels = [[t.config.id2label[i] for i in range(t.config.num_labels)] for t in teachers]
    for name, own in zip(names[1:], labels[1:]):
        if own != labels[0]:
            raise ModelError(format_error(
                f"The teachers predict different labels: {names[0]} and {name}.",
                "every teacher's labels in one order (their distributions are averaged label by label)",
                f"{labels[0]} and {own}", "fine-tune every teacher on the same data (same label set), or distill "
                "from the teachers that agree"))
    return labels[0]


def check_same_tokenizer(tokenizers: list, names: list[str]) -> None:
    """One tokenization for all teachers: the data is tokenized once and every teacher reads the same input_ids."""
    vocab = tokenizers[0].get_vocab()
    for name, tokenizer in zip(names[1:], tokenizers[1:]):
        other = tokenizer.get_vocab()
        if other != vocab:
            raise ModelError(format_error(
                f"The teachers {names[0]} and {name} tokenize differently.",
                "one vocabulary shared by every teacher (the training texts are tokenized once)",
                f"vocabularies of {len(vocab)} and {len(other)} tokens, {len(set(vocab) ^ set(other))} not shared",
                "use teachers fine-tuned from the same base model (different seeds, strategies or data), or "
                "distill from each family separately"))


class TeacherEnsemble(nn.Module):
    """Frozen teachers whose forward pass returns `ensemble_logits` of theirs.

    The weights, temperature and combination are buffers, so they are in `state_dict()`: the teacher cache's
    fingerprint (a hash of the state dict) changes with any of them, and a cached entry is never reused for
    another ensemble. Hidden-state and attention losses need one teacher's layers: the caller refuses them.
    """

    def __init__(self, teachers: list[PreTrainedModel], weights: list[float], temperature: float,
                 kd_loss: str = "kl", names: list[str] | None = None):
        super().__init__()
        self.teachers = nn.ModuleList(teachers)
        self.config = teachers[0].config  # labels and sizes: the first teacher's, shared by all (checked)
        # Computed from the Python values (a half-precision teacher casts buffers: T=2.2 would become 2.203); the
        # buffers only put them into the state dict the cache fingerprint hashes.
        self.weight_values, self.temperature_value = [float(w) for w in weights], float(temperature)
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32))
        self.register_buffer("temperature", torch.tensor(float(temperature)))
        self.register_buffer("combination", torch.tensor(COMBINATIONS[kd_loss]))
        self.kd_loss = kd_loss
        self.names = names or [t.name_or_path for t in teachers]

    @property
    def num_teachers(self) -> int:
        return len(self.teachers)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None,
                output_hidden_states: bool = False, output_attentions: bool = False) -> SequenceClassifierOutput:
        # Named inputs, not **kwargs: Trainer keeps the dataset columns that forward's signature names.
        features = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        features = {k: v for k, v in features.items() if v is not None}
        logits = torch.stack([teacher(**features).logits for teacher in self.teachers])  # (teachers, batch, labels)
        logits = ensemble_logits(logits, torch.tensor(self.weight_values), self.temperature_value, self.kd_loss)
        # Evaluation (Trainer.predict) reads a loss: the cross-entropy of the ensemble's logits with the gold labels.
        loss = None if labels is None else torch.nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


def teachers_of(teacher: nn.Module) -> list[PreTrainedModel]:
    """The single teachers behind `teacher` (itself when it is one)."""
    return list(teacher.teachers) if isinstance(teacher, TeacherEnsemble) else [teacher]


def check_ensemble_options(names: list[str], args) -> None:
    """Several teachers teach through their logits only: refuse what needs one teacher's layers, before any load."""
    if len(names) > 1 and (args.hidden_loss_weight > 0 or args.attention_loss_weight > 0):
        raise ConfigError(format_error(
            f"{len(names)} teachers were given with a hidden-state or attention loss.",
            "logit distillation only with several teachers (their soft targets are averaged; their hidden states "
            "and attention maps are not comparable)",
            f"--hidden_loss_weight {args.hidden_loss_weight}, --attention_loss_weight {args.attention_loss_weight}",
            "set both to 0, or distill from one teacher"))


def load_ensemble(first: PreTrainedModel, first_tokenizer, names: list[str], paths: list[str],
                  weights: list[float] | None, args) -> TeacherEnsemble:
    """The teachers at `paths` (the first already loaded) as one `TeacherEnsemble`, after checking that they
    share one label order and one tokenizer; DistillationArguments `args` give the temperature and the loss."""
    teachers = [first, *(load_teacher(path) for path in paths[1:])]
    check_same_labels(teachers, names)
    check_same_tokenizer([first_tokenizer, *(load_tokenizer(path) for path in paths[1:])], names)
    return TeacherEnsemble(teachers, normalised_weights(weights, len(teachers)), args.temperature, args.kd_loss,
                           names=names)


def _size_mb(model: PreTrainedModel, path: str) -> float:
    if Path(path).is_dir():
        return size_on_disk_mb(path)
    return sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 1e6


def ensemble_entry(ensemble: TeacherEnsemble, paths: list[str], ensemble_test: dict, test_dataset, collator,
                   tokenizer, latency_texts: Sequence[str], max_length: int, batch_size: int = 64) -> ModelEntry:
    """The report's teacher row for an ensemble: its test metrics (`ensemble_test`, Trainer.predict's), the sums
    of its teachers' parameters, layers and sizes, its batch-1 latency (every teacher runs), and under
    `ensemble` each teacher's weight and own test metrics."""
    labels = np.asarray(test_dataset["label"])
    members = []
    for name, path, teacher, weight in zip(ensemble.names, paths, ensemble.teachers, ensemble.weight_values):
        logits = predict_logits(teacher, test_dataset, collator=collator, batch_size=batch_size)
        members.append({"name_or_path": name, "weight": round(weight, 6),
                        "test": classification_metrics(logits.argmax(-1), labels),
                        "size_mb": round(_size_mb(teacher, path), 3)})
    combination = (f"weighted average of the tempered distributions (T={ensemble.temperature_value:g})"
                   if ensemble.kd_loss == "kl" else "weighted average of the logits")
    ensemble = ensemble.to("cpu").eval()
    return ModelEntry(
        params=count_parameters(ensemble), num_layers=sum(num_layers(t) for t in ensemble.teachers),
        size_mb=round(sum(m["size_mb"] for m in members), 3),
        test={k: ensemble_test[f"test_{k}"] for k in TEST_METRICS},
        latency_ms=round(torch_latency_ms(ensemble, tokenizer, latency_texts, max_length), 3),
        extra={"ensemble": {"teachers": members, "combination": combination}},
    )
