"""Structured attention-head pruning by importance, magnitude pruning of Linear weights, and a short recovery
fine-tune.

Head importance follows Michel, Levy & Neubig (2019), "Are Sixteen Heads Really Better than One?": a head mask
xi (one gate per head, all ones) is fed to the model and the importance of head h is the accumulated
|dL/dxi_h| over a few labelled batches, L2-normalised within each layer. Without labels the model's own argmax
predictions serve as targets (the sensitivity of its current decisions). transformers 5 dropped `head_mask` and
`prune_heads`, so the gates are a pre-hook on each layer's attention output projection and heads are removed by
slicing the query/key/value rows and the output projection's columns: their weights are gone,
`config.pruned_heads` records them (original head indices), and `load_classifier` rebuilds the smaller model
(`apply_pruned_heads`). Layers must look like BERT's (`attention.self.{query,key,value}`, `attention.output.dense`),
as in BERT, RoBERTa, ELECTRA, XLM-R and MiniLM.
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from nlp_reuse.errors import ModelError, format_error
from nlp_reuse.modeling import count_parameters

logger = logging.getLogger(__name__)


def _check_fraction(name: str, value: float, upper_inclusive: bool = False) -> None:
    ok = 0.0 <= value <= 1.0 if upper_inclusive else 0.0 <= value < 1.0
    if not ok:
        interval = "[0, 1]" if upper_inclusive else "[0, 1)"
        raise ModelError(format_error(f"{name} out of range.", f"a fraction in {interval}", repr(value),
                                      f"pass e.g. {name}=0.25"))


def _attention_layers(model: nn.Module) -> list[nn.Module]:
    """The `attention` module of every encoder layer; a clear error for layouts other than BERT's."""
    layers = getattr(getattr(model.base_model, "encoder", None), "layer", None)
    if layers is None or not all(hasattr(layer, "attention") and hasattr(layer.attention, "self")
                                 and hasattr(layer.attention.output, "dense") for layer in layers):
        raise ModelError(format_error(
            "Head pruning does not know this architecture.",
            "BERT-style layers: base_model.encoder.layer[i].attention.self.query/key/value and .attention.output.dense",
            f"{type(model).__name__}", "use a BERT, RoBERTa, ELECTRA or MiniLM classifier, or skip head pruning",
        ))
    return list(layers)


def heads_per_layer(model: nn.Module) -> list[int]:
    """Number of attention heads left in each encoder layer (read from the weight shapes)."""
    return [layer.attention.self.query.out_features // layer.attention.self.attention_head_size
            for layer in _attention_layers(model)]


def pruned_heads_of(config) -> dict[int, list[int]]:
    """config.pruned_heads with int keys ({} when nothing was pruned; JSON turns the keys into strings)."""
    recorded = getattr(config, "pruned_heads", None) or {}
    return {int(layer): sorted(int(h) for h in heads) for layer, heads in recorded.items()}


def _check_scorable(model: nn.Module, texts: list[str], what: str) -> None:
    """Importance is scored on texts, with every original head present (gates index the original heads)."""
    pruned = pruned_heads_of(model.config)
    if pruned:
        raise ModelError(format_error(
            f"{what} needs a model without pruned heads.", "config.pruned_heads == {}",
            f"pruned_heads={pruned}", "compute importance on the model folder before pruning",
        ))
    if not texts:
        raise ModelError(format_error(f"{what} needs texts.", "a non-empty list of texts", "an empty list",
                                      "pass --train_file so a few training batches can be scored"))


def _gate_heads(layers: list[nn.Module], gates: torch.Tensor) -> list:
    """Multiply each head's output by its gate (`gates`: (num_layers, num_heads)) with a forward pre-hook on every
    layer's attention output projection; returns the hook handles (call `.remove()` on each when done)."""
    num_heads = gates.shape[1]

    def gate_hook(index: int):
        def hook(module, args):
            (context,) = args  # (batch, seq, heads * head_dim), the heads' outputs before the output projection
            shape = context.shape
            gated = context.view(*shape[:-1], num_heads, -1) * gates[index][:, None]
            return (gated.view(shape),)
        return hook

    return [layer.attention.output.dense.register_forward_pre_hook(gate_hook(i)) for i, layer in enumerate(layers)]


def compute_head_importance(model: nn.Module, tokenizer, texts: list[str], labels: list[int] | None = None, *,
                            batch_size: int = 16, max_length: int = 128, normalize_per_layer: bool = True
                            ) -> torch.Tensor:
    """(num_layers, num_heads) head importance |dL/d gate| accumulated over `texts` (Michel et al. 2019).

    `labels` are class ids; when None the model's own predictions are used as targets.
    """
    _check_scorable(model, texts, "Head importance")
    layers = _attention_layers(model)
    device = next(model.parameters()).device
    gates = torch.ones(len(layers), model.config.num_attention_heads, device=device, requires_grad=True)
    handles = _gate_heads(layers, gates)
    importance = torch.zeros_like(gates)
    was_training = model.training
    model.eval()  # no dropout: the gradient should reflect the deployed model
    num_tokens = 0
    try:
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(texts[start:start + batch_size], padding=True, truncation=True, max_length=max_length,
                            return_tensors="pt").to(device)
            logits = model(**enc).logits  # (batch, num_labels)
            targets = (torch.tensor(labels[start:start + batch_size], device=device) if labels is not None
                       else logits.argmax(-1).detach())
            loss = nn.functional.cross_entropy(logits, targets)
            loss.backward()
            importance += gates.grad.abs().detach()
            gates.grad = None
            num_tokens += int(enc["attention_mask"].sum())
    finally:
        for handle in handles:
            handle.remove()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    importance /= max(num_tokens, 1)
    if normalize_per_layer:
        # Layer-wise L2 normalisation (Michel et al. 2019, sec. 4.2) makes scores comparable across layers.
        importance /= importance.norm(dim=-1, keepdim=True).clamp_min(1e-20)
    return importance


def _keep_rows(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    """A copy of `linear` keeping `index` along its output (dim 0) or input (dim 1) features."""
    weight = linear.weight.index_select(dim, index).detach().clone()
    bias = linear.bias
    if bias is not None and dim == 0:
        bias = bias[index]
    out_features, in_features = weight.shape
    new = nn.Linear(in_features, out_features, bias=bias is not None).to(weight.device, weight.dtype)
    new.weight.data.copy_(weight)
    if bias is not None:
        new.bias.data.copy_(bias.detach())
    return new


def prune_heads(model: nn.Module, heads: dict[int, list[int]]) -> None:
    """Remove `heads` ({layer: [head index among the layer's current heads]}) in place and record them.

    `config.pruned_heads` keeps original head indices, so pruning twice and reloading both stay correct.
    """
    layers = _attention_layers(model)
    recorded = pruned_heads_of(model.config)
    original = model.config.num_attention_heads
    heads = {int(layer): [int(h) for h in to_remove] for layer, to_remove in heads.items() if to_remove}
    current_heads = heads_per_layer(model)
    for layer_index, to_remove in heads.items():  # every layer is checked before any is changed
        current = current_heads[layer_index] if 0 <= layer_index < len(layers) else 0
        if not current or min(to_remove) < 0 or max(to_remove) >= current or len(set(to_remove)) >= current:
            raise ModelError(format_error(
                f"Cannot prune heads {to_remove} of layer {layer_index}.",
                f"a layer in [0, {len(layers)}) and distinct head indices in [0, {current}) leaving at least one "
                "head", f"{to_remove}", "prune fewer heads (select_heads_to_prune keeps one per layer)",
            ))
    for layer_index, to_remove in heads.items():
        attention = layers[layer_index].attention
        self_attn = attention.self
        head_dim = self_attn.attention_head_size
        current = current_heads[layer_index]
        keep = [h for h in range(current) if h not in set(to_remove)]
        index = torch.tensor([h * head_dim + d for h in keep for d in range(head_dim)],
                             device=self_attn.query.weight.device)
        for name in ("query", "key", "value"):
            setattr(self_attn, name, _keep_rows(getattr(self_attn, name), index, dim=0))
        attention.output.dense = _keep_rows(attention.output.dense, index, dim=1)
        self_attn.num_attention_heads = len(keep)
        self_attn.all_head_size = len(keep) * head_dim
        survivors = [h for h in range(original) if h not in set(recorded.get(layer_index, []))]
        recorded[layer_index] = sorted(set(recorded.get(layer_index, [])) | {survivors[h] for h in to_remove})
    model.config.pruned_heads = {layer: heads for layer, heads in sorted(recorded.items()) if heads}


def apply_pruned_heads(model: nn.Module) -> nn.Module:
    """Shrink a freshly built model to the heads its config.pruned_heads removed (before loading its weights)."""
    recorded = pruned_heads_of(model.config)
    model.config.pruned_heads = {}
    prune_heads(model, recorded)
    return model


def load_pruned_model(folder: str | Path) -> nn.Module:
    """Rebuild a head-pruned model folder: architecture from config.json, shrunk by its pruned_heads, weights
    loaded strictly (a plain `from_pretrained` would fail on the smaller matrices)."""
    from safetensors.torch import load_model
    from transformers import AutoConfig, AutoModelForSequenceClassification

    folder = Path(folder)
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    model = apply_pruned_heads(AutoModelForSequenceClassification.from_config(config))
    load_model(model, str(folder / "model.safetensors"), strict=True)
    return model.eval()


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
    """Score heads on `texts` and remove the `fraction` least important ones in place (`prune_heads`)."""
    _check_fraction("prune_heads_fraction", fraction)
    config = model.config
    heads_before = config.num_hidden_layers * config.num_attention_heads
    params_before = count_parameters(model)
    importance = compute_head_importance(model, tokenizer, texts, labels, batch_size=batch_size,
                                         max_length=max_length)
    to_prune = select_heads_to_prune(importance, fraction)
    if to_prune:
        prune_heads(model, to_prune)
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
        raise ModelError(format_error("Recovery fine-tuning needs labelled texts.", "as many labels as texts",
                                      f"{len(texts)} texts, {len(labels)} labels",
                                      "pass --train_file with text and label columns"))
    encodings = tokenizer(texts, truncation=True, max_length=max_length)
    with tempfile.TemporaryDirectory(prefix="nlp_reuse_recovery_") as tmp:
        args = TrainingArguments(output_dir=tmp, num_train_epochs=num_train_epochs, learning_rate=learning_rate,
                                 per_device_train_batch_size=batch_size, save_strategy="no", report_to=[],
                                 logging_strategy="no", seed=seed, disable_tqdm=True,
                                 dataloader_pin_memory=torch.cuda.is_available())
        trainer = Trainer(model=model, args=args, train_dataset=_TextDataset(dict(encodings), list(labels)),
                          data_collator=DataCollatorWithPadding(tokenizer))
        trainer.train()
    return model.eval()


__all__ = [
    "HeadPruningReport",
    "apply_pruned_heads",
    "compute_head_importance",
    "heads_per_layer",
    "load_pruned_model",
    "magnitude_prune",
    "make_pruning_permanent",
    "prune_heads",
    "prune_heads_by_importance",
    "pruned_heads_of",
    "recovery_finetune",
    "select_heads_to_prune",
]
