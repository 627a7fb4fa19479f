"""The masked-LM side of continued pretraining: loading an encoder with an MLM head (a new one tied to the input
embeddings when the checkpoint has none) and measuring the masked-token loss on fixed masks, before and after."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from datasets import Dataset
from torch import nn
from transformers import (
    AutoModel,
    AutoModelForMaskedLM,
    DataCollatorForLanguageModeling,
    PreTrainedModel,
    Trainer,
    TrainingArguments,
)
from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

from nlp_reuse.errors import ModelError, format_error
from nlp_reuse.modeling import readable_weights, resolve_model_path
from nlp_reuse.predict import eval_mode

logger = logging.getLogger(__name__)

# Mask draws over the measured texts at most (--loss_masked_tokens).
MAX_MASK_PASSES = 32


# ---------------------------------------------------------------------------------------------------------- model


@dataclass
class LoadedMaskedLM:
    """A masked-LM model and what loading it did."""

    model: PreTrainedModel
    new_head_weights: list[str]  # weights of the MLM head the checkpoint lacked, initialised here
    carried: dict[str, torch.Tensor]  # checkpoint weights the MaskedLM class has no place for, saved back (pooler)

    @property
    def head_initialised(self) -> bool:
        return bool(self.new_head_weights)


def decoder_tied(model: PreTrainedModel) -> bool:
    """Whether the MLM decoder is the input embedding matrix itself (not a copy)."""
    output = model.get_output_embeddings()
    return output is not None and output.weight is model.get_input_embeddings().weight


def check_masked_lm_support(config, name_or_path: str) -> None:
    """A BERT-family encoder AutoModelForMaskedLM can build; raised before any weight is read."""
    if config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES or getattr(config, "is_encoder_decoder", False):
        raise ModelError(format_error(
            f"{name_or_path} cannot be adapted with masked-language modelling.",
            "a BERT-family encoder that AutoModelForMaskedLM supports (bert, roberta, distilbert, electra, "
            "deberta-v2, xlm-roberta, ...)",
            f"model_type {config.model_type!r} ({', '.join(config.architectures or ['no architectures'])})",
            "adapt the transformer encoder the model was built from (e.g. the teacher), or pass --model_name_or_path "
            "of a BERT-family checkpoint",
        ))


def load_masked_lm(name_or_path: str) -> LoadedMaskedLM:
    """`AutoModelForMaskedLM` from a checkpoint with or without an MLM head; a new head's decoder is tied to the input
    embeddings (a ModelError if the architecture cannot tie them)."""
    path = resolve_model_path(name_or_path)
    with readable_weights(path):
        model, info = AutoModelForMaskedLM.from_pretrained(path, output_loading_info=True)
    prefix = model.base_model_prefix
    missing = sorted(info["missing_keys"])
    encoder_missing = [k for k in missing if k.startswith(f"{prefix}.")]
    if encoder_missing:
        raise ModelError(format_error(
            f"The encoder weights of {name_or_path} do not fit {type(model).__name__}.",
            "every encoder weight in the checkpoint (only the MLM head may be new)",
            f"{len(encoder_missing)} missing and randomly initialised ({', '.join(encoder_missing[:4])}"
            f"{', ...' if len(encoder_missing) > 4 else ''})", "pass the folder of a BERT-family encoder",
        ))
    new_head = [k for k in missing if not k.startswith(f"{prefix}.")]
    if new_head:
        # transformers warns that such a checkpoint "seems corrupted" (its tied head bias is absent): it only has no
        # MLM head. BERT ties the decoder to the input embeddings; a new head must too, whatever the config says.
        logger.warning("%s has no masked-LM head: initialised %s (decoder tied to the input embeddings).",
                       name_or_path, ", ".join(new_head))
        if not decoder_tied(model):
            model.config.tie_word_embeddings = True
            model.tie_weights()
        if not decoder_tied(model):
            raise ModelError(format_error(
                f"The new masked-LM head of {type(model).__name__} cannot be tied to the input embeddings.",
                "an output embedding that is the input embedding matrix (as BERT's decoder is)",
                f"output embeddings {type(model.get_output_embeddings()).__name__} with their own weight",
                "start from a checkpoint that has a trained MLM head, or from a BERT-family encoder",
            ))
    return LoadedMaskedLM(model, new_head, _carried_weights(path, model, info["unexpected_keys"]))


def _carried_weights(path: str, model: PreTrainedModel, unexpected: set[str]) -> dict[str, torch.Tensor]:
    """The checkpoint's pooler, which a MaskedLM model has no place for: saved back beside the adapted encoder so a
    classifier fine-tuned from the folder starts from the same pooler as one fine-tuned from the source."""
    if not any(".pooler." in f".{key}" for key in unexpected):
        return {}
    with readable_weights(path):
        base = AutoModel.from_pretrained(path)
    prefix = model.base_model_prefix
    return {f"{prefix}.{key}": value.detach().clone() for key, value in base.state_dict().items()
            if key.startswith("pooler.")}


# ----------------------------------------------------------------------------------------------------- measurement


def fixed_mask_batches(dataset: Dataset, tokenizer, mlm_probability: float, batch_size: int, seed: int,
                       min_masked_tokens: int = 1) -> tuple[list[dict[str, torch.Tensor]], int]:
    """`dataset` collated into masked batches by a seeded collator, pass after pass (each pass draws new masks) until
    at least `min_masked_tokens` tokens are masked or MAX_MASK_PASSES passes are drawn; returns (batches, passes).
    Collated once: every model measured on the batches sees the same masks."""
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=mlm_probability, seed=seed)
    batches, masked, passes = [], 0, 0
    while passes < MAX_MASK_PASSES and (passes == 0 or masked < min_masked_tokens):
        for start in range(0, len(dataset), batch_size):
            batches.append(collator([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]))
            masked += int((batches[-1]["labels"] != -100).sum())
        passes += 1
    return batches, passes


def masked_token_loss(model: nn.Module, batches: list[dict[str, torch.Tensor]]) -> tuple[float, int]:
    """(mean cross-entropy per masked token in nats, masked tokens) of `model` on `batches`; every masked token
    weighs the same, whatever batch it sits in. The loss is nan when no token is masked."""
    device = next(model.parameters()).device
    total, count = 0.0, 0
    with eval_mode(model), torch.no_grad():
        for batch in batches:
            labels = batch["labels"].to(device)
            inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
            logits = model(**inputs).logits  # (batch, seq, vocab)
            total += F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100,
                                     reduction="sum").item()
            count += int((labels != -100).sum())
    return (total / count if count else float("nan")), count


@dataclass
class LossBeforeAfter:
    """The masked-token loss of the source and the adapted model on the same texts and masks."""

    texts: int
    mask_passes: int  # masks drawn per text
    masked_tokens: int  # over all passes
    before: float
    after: float | None = None
    after_head_warmup: float | None = None  # a new head trained alone first (--head_warmup_steps): encoder unchanged

    def to_dict(self) -> dict:
        def perplexity(loss):
            return None if loss is None or math.isnan(loss) else round(math.exp(loss), 4)

        return {"texts": self.texts, "mask_passes": self.mask_passes, "masked_tokens": self.masked_tokens,
                "before": round(self.before, 6),
                "after": None if self.after is None else round(self.after, 6),
                **({} if self.after_head_warmup is None else
                   {"after_head_warmup": round(self.after_head_warmup, 6),
                    "perplexity_after_head_warmup": perplexity(self.after_head_warmup)}),
                "perplexity_before": perplexity(self.before), "perplexity_after": perplexity(self.after)}


def warm_up_new_head(model: PreTrainedModel, new_head_weights: list[str], train: Dataset, collator,
                     trainer_args: TrainingArguments, steps: int, learning_rate: float, output_dir) -> dict:
    """Train only the weights of a new MLM head (`new_head_weights`) for `steps` steps at a constant
    `learning_rate`; the encoder and the decoder tied to the input embeddings stay frozen. One step is one batch of
    `trainer_args.per_device_train_batch_size` (no gradient accumulation). Returns what ran (steps, learning rate,
    trained weights, the mean training loss over all the steps, wall-clock seconds). The trainable flags are restored
    afterwards."""
    trainable = set(new_head_weights)
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    trained = [name for name in flags if name in trainable]  # a tied decoder is listed under the embeddings' name
    if not trained:
        raise ModelError(format_error(
            "The new MLM head has no weights of its own to warm up.", f"some of {new_head_weights} among the "
            "model's parameters", "all tied to the encoder", "set --head_warmup_steps 0"))
    for name, param in model.named_parameters():
        param.requires_grad = name in trainable
    # Its own arguments (constant rate, no checkpoints, no trackers); the device, precision and seed of the run's.
    warm_args = TrainingArguments(
        output_dir=str(output_dir), max_steps=steps, learning_rate=learning_rate, lr_scheduler_type="constant",
        per_device_train_batch_size=trainer_args.per_device_train_batch_size, seed=trainer_args.seed,
        data_seed=trainer_args.data_seed, use_cpu=trainer_args.use_cpu, bf16=trainer_args.bf16,
        fp16=trainer_args.fp16, disable_tqdm=trainer_args.disable_tqdm, save_strategy="no", report_to="none",
        dataloader_pin_memory=trainer_args.dataloader_pin_memory, logging_steps=max(1, steps // 5),
        remove_unused_columns=False)
    start = time.perf_counter()
    try:
        result = Trainer(model=model, args=warm_args, train_dataset=train, data_collator=collator).train()
    finally:
        for name, param in model.named_parameters():
            param.requires_grad = flags[name]
    return {"steps": result.global_step, "learning_rate": learning_rate, "trained_weights": trained,
            "train_loss": round(result.training_loss, 6), "seconds": round(time.perf_counter() - start, 3)}
