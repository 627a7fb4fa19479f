"""Structured attention-head pruning by importance, magnitude pruning of Linear weights, and a short recovery
fine-tune.

Head importance follows Michel, Levy & Neubig (2019), "Are Sixteen Heads Really Better than One?": a head mask
xi (one gate per head, all ones) is fed to the model and the importance of head h is the accumulated
|dL/dxi_h| over a few labelled batches, L2-normalised within each layer. Without labels the model's own argmax
predictions serve as targets (the sensitivity of its current decisions). Heads are removed with
`model.prune_heads`, so their weights are gone, `config.pruned_heads` records them and `from_pretrained`
rebuilds the smaller model.
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from nlp_reuse.compress.artifacts import format_error
from nlp_reuse.modeling import count_parameters

logger = logging.getLogger(__name__)


def _check_fraction(name: str, value: float, upper_inclusive: bool = False) -> None:
    ok = 0.0 <= value <= 1.0 if upper_inclusive else 0.0 <= value < 1.0
    if not ok:
        interval = "[0, 1]" if upper_inclusive else "[0, 1)"
        raise ValueError(format_error(f"{name} out of range.", f"a fraction in {interval}", repr(value),
                                      f"pass e.g. {name}=0.25"))


def compute_head_importance(model: nn.Module, tokenizer, texts: list[str], labels: list[int] | None = None, *,
                            batch_size: int = 16, max_length: int = 128, normalize_per_layer: bool = True
                            ) -> torch.Tensor:
    """(num_layers, num_heads) head importance |dL/d head_mask| accumulated over `texts` (Michel et al. 2019).

    `labels` are class ids; when None the model's own predictions are used as targets.
    """
    config = model.config
    if config.pruned_heads:
        raise ValueError(format_error(
            "Head importance needs an unpruned model.", "config.pruned_heads == {}",
            f"pruned_heads={config.pruned_heads}", "compute importance on the model folder before pruning",
        ))
    if not texts:
        raise ValueError(format_error("Head importance needs texts.", "a non-empty list of texts", "an empty list",
                                      "pass --train_file so a few training batches can be scored"))
    device = next(model.parameters()).device
    head_mask = torch.ones(config.num_hidden_layers, config.num_attention_heads, device=device, requires_grad=True)
    importance = torch.zeros_like(head_mask)
    was_training = model.training
    model.eval()  # no dropout: the gradient should reflect the deployed model
    num_tokens = 0
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt").to(device)
        logits = model(**enc, head_mask=head_mask).logits  # (batch, num_labels)
        targets = (torch.tensor(labels[start:start + batch_size], device=device) if labels is not None
                   else logits.argmax(-1).detach())
        loss = nn.functional.cross_entropy(logits, targets)
        loss.backward()
        importance += head_mask.grad.abs().detach()
        head_mask.grad = None
        num_tokens += int(enc["attention_mask"].sum())
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    importance /= max(num_tokens, 1)
    if normalize_per_layer:
        # Layer-wise L2 normalisation (Michel et al. 2019, sec. 4.2) makes scores comparable across layers.
        importance /= importance.norm(dim=-1, keepdim=True).clamp_min(1e-20)
    return importance


def select_heads_to_prune(importance: torch.Tensor, fraction: float) -> dict[int, list[int]]:
    """The `fraction` least important heads overall, keeping at least one head in every layer.

    Returns {layer: [head, ...]} in the format `model.prune_heads` expects (layers with nothing to prune omitted).
    """
    _check_fraction("prune_heads_fraction", fraction)
    num_layers, num_heads = importance.shape
    target = math.floor(fraction * num_layers * num_heads)
    order = torch.argsort(importance.flatten()).tolist()  # least important first
    remaining = [num_heads] * num_layers
    chosen: dict[int, list[int]] = {}
    for flat in order:
        if sum(len(h) for h in chosen.values()) >= target:
            break
        layer, head = divmod(flat, num_heads)
        if remaining[layer] > 1:  # a layer with no heads left has no attention output at all
            chosen.setdefault(layer, []).append(head)
            remaining[layer] -= 1
    return {layer: sorted(heads) for layer, heads in sorted(chosen.items())}


@dataclass
class HeadPruningReport:
    """What head pruning removed."""

    fraction: float
    heads_before: int
    heads_after: int
    pruned_heads: dict[int, list[int]]
    params_before: int
    params_after: int
    importance: list[list[float]]  # (num_layers, num_heads), before pruning

    def to_dict(self) -> dict:
        return asdict(self)


def prune_heads_by_importance(model: nn.Module, tokenizer, texts: list[str], labels: list[int] | None, fraction: float,
                              *, batch_size: int = 16, max_length: int = 128) -> HeadPruningReport:
    """Score heads on `texts` and remove the `fraction` least important ones in place with `model.prune_heads`."""
    _check_fraction("prune_heads_fraction", fraction)
    config = model.config
    heads_before = config.num_hidden_layers * config.num_attention_heads
    params_before = count_parameters(model)
    importance = compute_head_importance(model, tokenizer, texts, labels, batch_size=batch_size,
                                         max_length=max_length)
    to_prune = select_heads_to_prune(importance, fraction)
    if to_prune:
        model.prune_heads(to_prune)
    removed = sum(len(h) for h in to_prune.values())
    logger.info("Pruned %d of %d attention heads: %s", removed, heads_before, to_prune)
    return HeadPruningReport(fraction=fraction, heads_before=heads_before, heads_after=heads_before - removed,
                             pruned_heads=to_prune, params_before=params_before,
                             params_after=count_parameters(model), importance=importance.tolist())


def _encoder_linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """Linear layers of the transformer body; the classifier head and pooler stay dense."""
    encoder = model.base_model.encoder
    prefix = f"{model.base_model_prefix}.encoder."
    return [(prefix + name, module) for name, module in encoder.named_modules() if isinstance(module, nn.Linear)]


def magnitude_prune(model: nn.Module, amount: float, *, permanent: bool = True) -> dict[str, float]:
    """Zero the `amount` smallest-|w| weights of every encoder Linear (L1 unstructured, per layer).

    With `permanent=False` the torch pruning masks stay attached (so a recovery fine-tune cannot regrow the zeros);
    call `make_pruning_permanent` afterwards. Returns the resulting sparsity of each layer. Dense ONNX files
    and kernels do not get smaller or faster from unstructured zeros; the gain shows after compression (zip) or
    on sparse runtimes.
    """
    _check_fraction("magnitude_prune_amount", amount)
    sparsity = {}
    for name, module in _encoder_linears(model):
        torch_prune.l1_unstructured(module, name="weight", amount=amount)
        sparsity[name] = float((module.weight == 0).float().mean())
    if permanent:
        make_pruning_permanent(model)
    return sparsity


def make_pruning_permanent(model: nn.Module) -> None:
    """Fold torch pruning masks into the weights (weight_orig * mask -> weight) and drop the hooks."""
    for module in model.modules():
        if torch_prune.is_pruned(module) and hasattr(module, "weight_mask"):
            torch_prune.remove(module, "weight")


class _TextDataset(torch.utils.data.Dataset):
    def __init__(self, encodings: dict, labels: list[int]):
        self.encodings = encodings
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, idx: int) -> dict:
        item = {key: values[idx] for key, values in self.encodings.items()}
        item["labels"] = self.labels[idx]
        return item


def recovery_finetune(model: nn.Module, tokenizer, texts: list[str], labels: list[int], *,
                      num_train_epochs: float = 1.0, learning_rate: float = 3e-5, batch_size: int = 16,
                      max_length: int = 128, seed: int = 42) -> nn.Module:
    """A short plain fine-tune (transformers.Trainer, cross-entropy on `labels`) to recover accuracy after
    pruning or factorization. Returns the model in eval mode; nothing is written to disk."""
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    if not texts or len(texts) != len(labels):
        raise ValueError(format_error("Recovery fine-tuning needs labelled texts.", "as many labels as texts",
                                      f"{len(texts)} texts, {len(labels)} labels",
                                      "pass --train_file with text and label columns"))
    encodings = tokenizer(texts, truncation=True, max_length=max_length)
    with tempfile.TemporaryDirectory(prefix="nlp_reuse_recovery_") as tmp:
        args = TrainingArguments(output_dir=tmp, num_train_epochs=num_train_epochs, learning_rate=learning_rate,
                                 per_device_train_batch_size=batch_size, save_strategy="no", report_to=[],
                                 logging_strategy="no", seed=seed, disable_tqdm=True)
        trainer = Trainer(model=model, args=args, train_dataset=_TextDataset(dict(encodings), list(labels)),
                          data_collator=DataCollatorWithPadding(tokenizer))
        trainer.train()
    return model.eval()


__all__ = [
    "HeadPruningReport",
    "compute_head_importance",
    "magnitude_prune",
    "make_pruning_permanent",
    "prune_heads_by_importance",
    "recovery_finetune",
    "select_heads_to_prune",
]
