"""Unsupervised domain adaptation while fine-tuning: a labelled source domain, unlabeled target-domain texts.

Every training step of `DomainAdaptationTrainer` runs the labelled source batch and the next batch of target texts
through the model in one forward pass and adds `--domain_loss_weight` times a domain loss between the two batches'
features to the task cross-entropy of the source batch:

- `coral`: Deep CORAL (Sun & Saenko 2016), the distance between the two feature covariances;
- `mmd`: multi-kernel maximum mean discrepancy (DAN, Long et al. 2015);
- `adversarial`: DANN (Ganin et al. 2016), a `DomainClassifier` learns to tell source (0) from target (1) features
  while a gradient reversal layer makes the encoder learn features it cannot tell apart.

The features are the input of the model's classification head (`capture_head_input`): what the classifier reads is
what has to look alike in both domains. Evaluation and prediction are plain fine-tuning (task loss, no target batch).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset
from torch import nn
from transformers import PreTrainedModel, Trainer
from transformers.modeling_outputs import SequenceClassifierOutput

from nlp_reuse.config import FinetuneArguments
from nlp_reuse.errors import ConfigError, DataError, ModelError, format_error
from nlp_reuse.losses import get_domain_loss, hard_ce_loss
from nlp_reuse.trainers import OutsideModulesMixin
from nlp_reuse.transfer_set import load_unlabeled_texts

DOMAIN_CLASSIFIER_FILE_NAME = "domain_classifier.safetensors"
ALIGNMENT_LOSSES = ("coral", "mmd", "adversarial")  # the --domain_loss values that train with a target batch


# ------------------------------------------------------------------------------------------- adversarial (DANN)
class GradientReversal(torch.autograd.Function):
    """Identity forward, `-lambda * grad` backward (Ganin et al. 2016, "Domain-Adversarial Training of Neural
    Networks"): the layers below learn to increase the loss the layers above learn to decrease."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lambda_: float) -> torch.Tensor:
        ctx.lambda_ = lambda_
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.lambda_ * grad, None


def grad_reverse(x: torch.Tensor, lambda_: float = 1.0) -> torch.Tensor:
    """`x` unchanged; its gradient multiplied by `-lambda_` on the way back."""
    return GradientReversal.apply(x, lambda_)


def dann_lambda(progress: float) -> float:
    """DANN's schedule of the reversal strength, `2 / (1 + exp(-10 p)) - 1` for training progress p in [0, 1]: 0 at
    the start, while the domain classifier is still noise, then rising to ~1 (0.46 at p = 0.1, 0.76 at p = 0.2,
    0.9999 at p = 1)."""
    return 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0


class DomainClassifier(nn.Module):
    """The DANN domain discriminator: features (batch, hidden) -> hidden -> one logit per example (target = 1)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(-1)  # (batch,)


def domain_adversarial_loss(domain_classifier: nn.Module, source: torch.Tensor, target: torch.Tensor,
                            lambda_: float = 1.0) -> torch.Tensor:
    """Binary cross-entropy of `domain_classifier` on the reversed features of source (label 0) and target (label 1)
    examples, averaged over both: batch-level, one scalar. The classifier's own gradient descends it; the features'
    gradient is reversed and scaled by `lambda_`."""
    features = grad_reverse(torch.cat([source, target]), lambda_)  # (n_s + n_t, hidden)
    domains = torch.cat([torch.zeros(len(source)), torch.ones(len(target))]).to(features.device)
    return F.binary_cross_entropy_with_logits(domain_classifier(features).float(), domains)


# ------------------------------------------------------------------------------------------------------ features
# The pre-hook reads exactly what the head reads, whatever the family computes before it: BERT's tanh pooler over
# [CLS] (after dropout), DistilBERT's pre_classifier, DeBERTa's ContextPooler. Rebuilding that from
# output_hidden_states would re-implement each family's pooling; the hook also sees through peft, whose
# ModulesToSaveWrapper takes the head's place (and its input) under --strategy lora / ia3.
HEAD_NAME = "classifier"  # the head of every BERT-family ...ForSequenceClassification in transformers


def classifier_head(model: PreTrainedModel) -> nn.Module:
    """The model's classification head module; a model without one is a ModelError."""
    try:
        return model.get_submodule(HEAD_NAME)
    except AttributeError as err:
        raise ModelError(format_error(
            f"{type(model).__name__} has no `{HEAD_NAME}` head to align the features of.",
            f"a BERT-family ...ForSequenceClassification model, whose task head is the module `{HEAD_NAME}`",
            f"the top-level modules {[name for name, _ in model.named_children()]}",
            "fine-tune a BERT-family encoder (BERT, DistilBERT, RoBERTa, DeBERTa, MiniLM), or drop --domain_loss",
        )) from err


@contextlib.contextmanager
def capture_head_input(model: PreTrainedModel) -> Iterator[list[torch.Tensor]]:
    """Collects the features the classification head reads in each forward pass inside the block, one (batch,
    hidden) tensor per pass. Heads that read the token sequence (RoBERTa, ELECTRA, MPNet: (batch, seq, hidden)) pool
    its first token themselves; the same first token is taken here."""
    captured: list[torch.Tensor] = []

    def hook(module, args):
        features = args[0]
        captured.append(features[:, 0] if features.dim() == 3 else features)

    handle = classifier_head(model).register_forward_pre_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


# -------------------------------------------------------------------------------------------------- target texts
def load_target_texts(path: str, text_column: str = "text", text_pair_column: str | None = None) -> list[str]:
    """The non-empty target-domain texts of --target_unlabeled_file, stripped: one per line of a .txt file, or the
    `text_column` of a .csv/.tsv/.jsonl/.json/.parquet file. At least 2: the losses compare batch statistics."""
    if text_pair_column is not None:
        raise ConfigError(format_error(
            "--target_unlabeled_file holds single texts, but the task has text pairs.",
            "a single-text task (no --text_pair_column) for domain adaptation",
            f"--text_pair_column {text_pair_column}", "drop --domain_loss and --target_unlabeled_file",
        ))
    try:
        texts = load_unlabeled_texts(path, text_column)
    except DataError as err:
        # The shared reader names distillation's --unlabeled_file; the user passed this file as another flag.
        raise DataError(str(err).replace("--unlabeled_file", "--target_unlabeled_file")) from err
    if len(texts) < 2:
        raise DataError(format_error(
            f"--target_unlabeled_file {path} holds too few texts.",
            "at least 2 non-empty target-domain texts (CORAL, MMD and the domain classifier compare batches)",
            f"{len(texts)} text", f"add target-domain texts to {path}",
        ))
    return texts


def tokenize_target_texts(texts: list[str], tokenizer, max_length: int) -> Dataset:
    """The target texts tokenized like the source splits (truncated, unpadded: the collator pads each batch)."""
    return Dataset.from_dict(dict(tokenizer(texts, truncation=True, max_length=max_length)))


class TargetBatches:
    """Batch number `draw` of the target texts: the texts are cycled in passes, each pass a fresh permutation seeded
    by (seed, pass), cut into consecutive batches of `batch_size` (fewer when there are fewer texts) that may straddle
    two passes. A pure function of `draw`, so a resumed run draws what the uninterrupted run drew."""

    def __init__(self, dataset: Dataset, batch_size: int, collator, seed: int):
        self.dataset, self.collator, self.seed = dataset, collator, seed
        self.batch_size = min(batch_size, len(dataset))
        self._orders: dict[int, np.ndarray] = {}

    def _order(self, pass_index: int) -> np.ndarray:
        if pass_index not in self._orders:
            self._orders = {k: v for k, v in self._orders.items() if k == pass_index - 1}  # a batch spans <= 2
            self._orders[pass_index] = np.random.default_rng([self.seed, pass_index]).permutation(len(self.dataset))
        return self._orders[pass_index]

    def batch(self, draw: int) -> dict[str, torch.Tensor]:
        n = len(self.dataset)
        positions = range(draw * self.batch_size, (draw + 1) * self.batch_size)
        return self.collator([self.dataset[int(self._order(p // n)[p % n])] for p in positions])


def concat_padded(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor], pad_token_id: int,
                  padding_side: str = "right") -> dict[str, torch.Tensor]:
    """One batch of the source rows then the target rows, both padded to the longer length (input_ids with the pad
    token, attention_mask and token_type_ids with 0): one forward pass serves both, which keeps DDP to one forward
    per backward."""
    length = max(source["input_ids"].shape[1], target["input_ids"].shape[1])

    def pad(x: torch.Tensor, key: str) -> torch.Tensor:
        missing = length - x.shape[1]
        return F.pad(x, (0, missing) if padding_side == "right" else (missing, 0),
                     value=pad_token_id if key == "input_ids" else 0)

    return {key: torch.cat([pad(source[key], key), pad(target[key], key)]) for key in source}  # (n_s + n_t, length)


# ------------------------------------------------------------------------------------------------------- trainer
class DomainAdaptationTrainer(OutsideModulesMixin, Trainer):
    """Fine-tunes on the labelled source set with `CE + domain_loss_weight * domain_loss(f_s, f_t)`: each training
    step also draws the next batch of `target_dataset` (cycled, shuffled with the run seed, the per-device batch
    size, the trainer's collator) and aligns the classification head's input features of both batches.

    The cross-entropy is summed per example and divided by the number of source examples in the whole optimizer
    step (all accumulation micro-batches, all processes), as in DistillationTrainer. The domain loss is a batch
    statistic: each micro-batch's value is weighted by that micro-batch's share of the step's examples, so the step
    optimizes the mean over micro-batches (the same for one large batch only where the loss is a mean over examples,
    as the adversarial BCE is). The adversarial domain classifier trains with the model and is checkpointed as
    `domain_classifier.safetensors`; the reversal strength follows DANN's schedule `dann_lambda(step / max_steps)`.
    """

    args: FinetuneArguments

    def __init__(self, model: PreTrainedModel, args: FinetuneArguments, target_dataset: Dataset, **kwargs):
        super().__init__(model=model, args=args, **kwargs)
        if args.domain_loss not in ALIGNMENT_LOSSES:
            raise ConfigError(f"DomainAdaptationTrainer needs --domain_loss one of {', '.join(ALIGNMENT_LOSSES)}; "
                              f"found {args.domain_loss!r}. Use transformers.Trainer to fine-tune without alignment.")
        if self.processing_class is None:
            raise ConfigError("DomainAdaptationTrainer needs processing_class=tokenizer: it pads the source and "
                              "target batches into one with the tokenizer's pad token.")
        if len(target_dataset) < 2:
            raise DataError(f"Expected at least 2 target texts to compare batch statistics, found "
                            f"{len(target_dataset)}.")
        classifier_head(self.model)  # a model without one fails here, not at the first step
        self.target_batches = TargetBatches(target_dataset, args.per_device_train_batch_size, self.data_collator,
                                            args.seed)
        self.domain_classifier = None
        if args.domain_loss == "adversarial":
            self.domain_classifier = self.register_outside_module(
                DomainClassifier(self.model.config.hidden_size), DOMAIN_CLASSIFIER_FILE_NAME,
                "a fine-tuning run with --domain_loss adversarial")
        self._target_step, self._target_micro = -1, 0  # the optimizer step and micro-batch drawing a target batch
        self._domain_loss_sum, self._domain_loss_count = 0.0, 0  # since the last log
        # We normalise by num_items_in_batch ourselves; this makes Trainer count it and not rescale the loss.
        self.model_accepts_loss_kwargs = True

    def _next_target_batch(self) -> dict[str, torch.Tensor]:
        # Numbered by (optimizer step, micro-batch, process): restored with global_step on resume.
        if self.state.global_step != self._target_step:
            self._target_step, self._target_micro = self.state.global_step, 0
        micro = self.state.global_step * self.args.gradient_accumulation_steps + self._target_micro
        self._target_micro += 1
        draw = micro * self.accelerator.num_processes + self.accelerator.process_index
        return self._prepare_inputs(self.target_batches.batch(draw))

    def grl_lambda(self) -> float:
        """The reversal strength at the current step (DANN's schedule over the run)."""
        return dann_lambda(self.state.global_step / self.state.max_steps if self.state.max_steps else 1.0)

    def domain_loss(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The batch-level domain loss between source and target features (batch, hidden)."""
        if self.domain_classifier is not None:
            return domain_adversarial_loss(self.domain_classifier, source, target, self.grl_lambda())
        if min(len(source), len(target)) < 2:
            # A covariance or a kernel mean needs two rows: a last batch of one example (training-set size one more
            # than a multiple of the batch) trains on its cross-entropy alone instead of stopping the run.
            return source.sum() * 0.0
        return get_domain_loss(self.args.domain_loss)(source, target)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not model.training:  # evaluation and prediction: the plain task loss, no target batch
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs["labels"]
        source = {k: v for k, v in inputs.items() if k != "labels"}
        tokenizer = self.processing_class
        batch = concat_padded(source, self._next_target_batch(), tokenizer.pad_token_id, tokenizer.padding_side)
        with capture_head_input(self.model) as captured:
            outputs = model(**batch)
        n_source = len(labels)
        logits, features = outputs.logits[:n_source], captured[0]  # features: (n_source + n_target, hidden)
        domain = self.domain_loss(features[:n_source], features[n_source:])
        self._domain_loss_sum += domain.detach()
        self._domain_loss_count += 1

        counted = (labels != -100).float()
        task = (hard_ce_loss(logits, labels) * counted).sum()
        if num_items_in_batch is None:  # a call outside the training step
            loss = task / counted.sum().clamp_min(1.0) + self.args.domain_loss_weight * domain
        else:
            share = counted.sum() / num_items_in_batch  # this micro-batch's part of the optimizer step
            loss = task / num_items_in_batch + self.args.domain_loss_weight * share * domain
            if self.args.average_tokens_across_devices:
                # num_items_in_batch counts every process's examples, and DDP averages gradients across processes.
                loss = loss * self.accelerator.num_processes
        return (loss, SequenceClassifierOutput(logits=logits)) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        # Training logs (they carry "loss") get the mean domain loss since the last one, apart from the total.
        if "loss" in logs and self._domain_loss_count:
            mean = torch.as_tensor(self._domain_loss_sum / self._domain_loss_count, device=self.args.device)
            logs["domain_loss"] = self.accelerator.reduce(mean, reduction="mean").item()
            if self.domain_classifier is not None:
                logs["grl_lambda"] = self.grl_lambda()
            self._domain_loss_sum, self._domain_loss_count = 0.0, 0
        super().log(logs, start_time)
