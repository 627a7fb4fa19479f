"""Structured pruning of attention heads and feed-forward (FFN) neurons, scored by the distillation loss.

Importance is first-order Taylor (Michel, Levy & Neubig 2019, "Are Sixteen Heads Really Better than One?"; Sanh,
Wolf & Rush 2020, "Movement Pruning"): a gate of ones multiplies every head's output (pre-hook on the attention
output projection, as in `prune.compute_head_importance`) and every FFN neuron's activation (forward hook on
`layer.intermediate`, after the activation function), and the importance of a gate is the accumulated
|dL/d gate| over a few batches, divided by the number of tokens. L is the loss the student is trained on:
`kd_loss` = `alpha * T^2 * KL(p_t^T || p_s^T) + (1 - alpha) * CE(s, y)` (Hinton et al. 2015), averaged over the
batch, so the structures removed are the ones the teacher's soft targets depend on least. Head scores are
L2-normalised within each layer (Michel et al. 2019, sec. 4.2); FFN scores are raw, since neurons are only compared
within a layer.

Heads are removed with `prune.prune_heads` (recorded in `config.pruned_heads`). FFN neurons are removed by slicing
the rows of `intermediate.dense` and the columns of `output.dense`, keeping the SAME width in every layer: then
`config.intermediate_size` alone describes the model, and `from_pretrained` / `artifacts.load_classifier` rebuild it
with strict weight loading and no special code.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from nlp_reuse.compress.prune import (
    _check_fraction,
    _check_scorable,
    _gate_heads,
    _keep_rows,
    prune_heads,
    select_heads_to_prune,
)
from nlp_reuse.errors import ModelError, format_error
from nlp_reuse.losses import kd_loss
from nlp_reuse.modeling import count_parameters

logger = logging.getLogger(__name__)


def _structured_layers(model: nn.Module) -> list[nn.Module]:
    """The encoder layers, checked to have BERT's attention and FFN made of plain Linear layers."""

    def linears(layer: nn.Module) -> list:
        attention = getattr(layer, "attention", None)
        found = [getattr(getattr(attention, "self", None), name, None) for name in ("query", "key", "value")]
        parents = (getattr(attention, "output", None), getattr(layer, "intermediate", None),
                   getattr(layer, "output", None))
        return found + [getattr(parent, "dense", None) for parent in parents]

    layers = list(getattr(getattr(model.base_model, "encoder", None), "layer", None) or [])
    modules = [linears(layer) for layer in layers]
    if not layers or not all(isinstance(linear, nn.Linear) for found in modules for linear in found):
        raise ModelError(format_error(
            "Structured pruning does not know this architecture.",
            "BERT-style layers base_model.encoder.layer[i] with plain nn.Linear attention.self.query/key/value, "
            "attention.output.dense, intermediate.dense and output.dense",
            f"{type(model).__name__} with " + (f"{[type(linear).__name__ for linear in modules[0]]} in layer 0"
                                               if layers else "no base_model.encoder.layer"),
            "use a BERT, RoBERTa, ELECTRA or MiniLM classifier, and prune before low-rank factorization",
        ))
    return layers


def ffn_width(model: nn.Module) -> int:
    """The FFN width shared by every layer (a clear error when the layers differ)."""
    widths = {layer.intermediate.dense.out_features for layer in _structured_layers(model)}
    if len(widths) != 1:
        raise ModelError(format_error(
            "The FFN layers have different widths.", "one intermediate width in every layer (config.intermediate_size)",
            f"widths {sorted(widths)}", "prune FFN neurons with prune_ffn, which keeps the width uniform",
        ))
    return widths.pop()


@dataclass
class StructureImportance:
    """First-order importance of every attention head and FFN neuron (higher = the loss depends on it more)."""

    heads: torch.Tensor  # (num_layers, num_heads), L2-normalised per layer unless asked otherwise
    ffn: list[torch.Tensor]  # one (intermediate_size,) tensor per layer


def _cpu_tensor(values, dtype: torch.dtype) -> torch.Tensor:
    """A CPU tensor from a list, NumPy array or tensor (detached: teacher logits carry no gradient)."""
    if isinstance(values, torch.Tensor):
        return values.detach().to("cpu", dtype)
    return torch.as_tensor(np.asarray(values), dtype=dtype)


def _check_distillation_inputs(model: nn.Module, texts: list[str], teacher_logits, teacher: nn.Module | None,
                               labels, temperature: float, alpha: float) -> tuple[torch.Tensor | None,
                                                                                   torch.Tensor | None]:
    """Validate the teacher source, labels and loss settings; return (teacher logits, labels) as tensors."""
    if (teacher_logits is None) == (teacher is None):
        raise ModelError(format_error(
            "Distillation importance needs the teacher's logits from exactly one source.",
            "teacher_logits= (an array aligned with texts) or teacher= (a classifier), not both",
            "neither" if teacher is None else "both", "pass the logits computed once (recover.teacher_logits_for), "
            "or the teacher model",
        ))
    num_labels = model.config.num_labels
    if teacher is not None and teacher.config.num_labels != num_labels:
        raise ModelError(format_error(
            "Teacher and student disagree on the number of labels.", f"a teacher with {num_labels} labels",
            f"{teacher.config.num_labels}", "use the teacher the student was distilled from",
        ))
    rows = None
    if teacher_logits is not None:
        rows = _cpu_tensor(teacher_logits, torch.float32)
        if rows.ndim != 2 or rows.shape[0] != len(texts) or rows.shape[1] != num_labels:
            raise ModelError(format_error(
                "Teacher logits do not line up with the texts.", f"shape ({len(texts)}, {num_labels}): one row of "
                "logits per text", f"shape {tuple(rows.shape)}", "compute the logits on the same texts, in order",
            ))
    targets = None
    if labels is not None:
        targets = _cpu_tensor(labels, torch.int64)
        if targets.ndim != 1 or len(targets) != len(texts):
            raise ModelError(format_error(
                "Labels do not line up with the texts.", f"{len(texts)} class ids (-100: no label)",
                f"shape {tuple(targets.shape)}", "pass one label per text, or labels=None for the soft term alone",
            ))
    if temperature <= 0 or not 0.0 <= alpha <= 1.0:
        raise ModelError(format_error(
            "Bad distillation settings.", "temperature > 0 and 0 <= alpha <= 1",
            f"temperature={temperature}, alpha={alpha}", "pass e.g. temperature=2.0, alpha=0.5",
        ))
    return rows, targets


def compute_structure_importance(model: nn.Module, tokenizer, texts: list[str], *, teacher_logits=None,
                                 teacher: nn.Module | None = None, teacher_tokenizer=None, labels=None,
                                 temperature: float = 2.0, alpha: float = 0.5, soft_loss: str = "kl",
                                 batch_size: int = 16, max_length: int = 128,
                                 normalize_heads: bool = True) -> StructureImportance:
    """Importance of every head and FFN neuron: |d kd_loss / d gate| accumulated over `texts`, per token.

    The teacher's logits come from `teacher_logits` ((len(texts), num_labels), array or tensor) or are computed by
    `teacher` without gradients (with `teacher_tokenizer`, default `tokenizer`). `labels` are class ids (-100: the
    example is left out, -1: soft term only) or None for the soft term alone. The model is scored in eval mode (no
    dropout); its parameters' `.grad` are left untouched.
    """
    _check_scorable(model, texts, "Structure importance")
    layers = _structured_layers(model)
    rows, targets = _check_distillation_inputs(model, texts, teacher_logits, teacher, labels, temperature, alpha)
    device = next(model.parameters()).device
    head_gates = torch.ones(len(layers), model.config.num_attention_heads, device=device, requires_grad=True)
    ffn_gates = [torch.ones(layer.intermediate.dense.out_features, device=device, requires_grad=True)
                 for layer in layers]

    def ffn_hook(gate: torch.Tensor):
        def hook(module, args, output):
            return output * gate  # (batch, seq, intermediate): one gate per neuron, after the activation
        return hook

    handles = _gate_heads(layers, head_gates)
    handles += [layer.intermediate.register_forward_hook(ffn_hook(gate)) for layer, gate in zip(layers, ffn_gates)]
    head_importance = torch.zeros_like(head_gates)
    ffn_importance = [torch.zeros_like(gate) for gate in ffn_gates]
    was_training = model.training
    model.eval()
    if teacher is not None:
        teacher.eval()
    num_tokens = 0
    try:
        for start in range(0, len(texts), batch_size):
            batch = list(texts[start:start + batch_size])
            enc = tokenizer(batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt").to(device)
            student_logits = model(**enc).logits  # (batch, num_labels)
            if rows is not None:
                soft_targets = rows[start:start + batch_size].to(device)
            else:
                teacher_device = next(teacher.parameters()).device
                teacher_enc = (teacher_tokenizer or tokenizer)(batch, padding=True, truncation=True,
                                                               max_length=max_length, return_tensors="pt")
                with torch.no_grad():
                    soft_targets = teacher(**teacher_enc.to(teacher_device)).logits.to(device)
            batch_labels = targets[start:start + batch_size].to(device) if targets is not None else None
            loss = kd_loss(student_logits, soft_targets, batch_labels, temperature, alpha, soft_loss).mean()
            # autograd.grad, not backward: only the gates get gradients, the parameters' .grad stay as they were.
            head_grad, *ffn_grads = torch.autograd.grad(loss, [head_gates, *ffn_gates])
            head_importance += head_grad.abs()
            for importance, grad in zip(ffn_importance, ffn_grads):
                importance += grad.abs()
            num_tokens += int(enc["attention_mask"].sum())
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    head_importance /= max(num_tokens, 1)
    ffn_importance = [importance / max(num_tokens, 1) for importance in ffn_importance]
    if normalize_heads:
        head_importance /= head_importance.norm(dim=-1, keepdim=True).clamp_min(1e-20)
    return StructureImportance(heads=head_importance, ffn=ffn_importance)


def select_ffn_neurons(ffn_importance: list[torch.Tensor], fraction: float | None = None, *,
                       width: int | None = None) -> dict[int, list[int]]:
    """The most important neurons of every layer, {layer: sorted indices to KEEP}, the same number in every layer.

    Give either `fraction`, the share of each layer's neurons to remove (in [0, 1), like `select_heads_to_prune`;
    floor(fraction * width) are removed, so at least one is kept), or `width`, the number to keep per layer.
    Ties keep the lower index.
    """
    if (fraction is None) == (width is None):
        raise ModelError(format_error("FFN selection needs one size.", "fraction= (share to remove) or width= "
                                      "(neurons to keep), not both", f"fraction={fraction}, width={width}",
                                      "pass e.g. fraction=0.5"))
    current = min(len(importance) for importance in ffn_importance)
    if fraction is not None:
        _check_fraction("ffn_fraction", fraction)
        width = current - math.floor(fraction * current)
    if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width <= current:
        raise ModelError(format_error("FFN width out of range.", f"an int in [1, {current}]", repr(width),
                                      f"pass e.g. width={max(current // 2, 1)}"))
    keep = {}
    for layer, importance in enumerate(ffn_importance):
        order = torch.argsort(importance.detach().cpu(), descending=True, stable=True)  # most important first
        keep[layer] = sorted(order[:width].tolist())
    return keep


def prune_ffn(model: nn.Module, keep: dict[int, list[int]]) -> None:
    """Keep only the FFN neurons `keep` ({layer: [neuron index among the layer's current neurons]}) in place.

    Every layer must be listed with the same number of neurons, so `config.intermediate_size` (updated here)
    describes the pruned model and a plain `from_pretrained` rebuilds it. Everything is checked before any layer
    changes.
    """
    layers = _structured_layers(model)
    keep = {int(layer): [int(n) for n in neurons] for layer, neurons in keep.items()}
    widths = {len(neurons) for neurons in keep.values()}
    if sorted(keep) != list(range(len(layers))) or len(widths) != 1:
        raise ModelError(format_error(
            "FFN pruning needs the same width in every layer.",
            f"neurons to keep for each of the layers 0..{len(layers) - 1}, the same number in each",
            f"layers {sorted(keep)} keeping {[len(keep[layer]) for layer in sorted(keep)]} neurons",
            "select them with select_ffn_neurons",
        ))
    for layer_index, neurons in keep.items():
        current = layers[layer_index].intermediate.dense.out_features
        if not neurons or min(neurons) < 0 or max(neurons) >= current or len(set(neurons)) != len(neurons):
            raise ModelError(format_error(
                f"Cannot keep FFN neurons {neurons[:8]}{'...' if len(neurons) > 8 else ''} of layer {layer_index}.",
                f"at least one distinct neuron index in [0, {current})", f"{len(neurons)} indices, "
                f"range [{min(neurons, default=None)}, {max(neurons, default=None)}], "
                f"{len(neurons) - len(set(neurons))} repeated", "select them with select_ffn_neurons",
            ))
    for layer_index, neurons in keep.items():
        layer = layers[layer_index]
        index = torch.tensor(sorted(neurons), device=layer.intermediate.dense.weight.device)
        layer.intermediate.dense = _keep_rows(layer.intermediate.dense, index, dim=0)
        layer.output.dense = _keep_rows(layer.output.dense, index, dim=1)
    model.config.intermediate_size = widths.pop()


@dataclass
class StructuredPruningReport:
    """What structured pruning removed, and the importance it was decided on (before pruning)."""

    heads_fraction: float
    ffn_fraction: float
    heads_before: int
    heads_after: int
    pruned_heads: dict[int, list[int]]
    ffn_width_before: int
    ffn_width_after: int
    params_before: int
    params_after: int
    head_importance: list[list[float]]  # (num_layers, num_heads)
    ffn_importance: list[list[float]]  # (num_layers, ffn_width_before)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> StructuredPruningReport:
        """Inverse of `to_dict`, also after a JSON round trip (which turns the layer keys into strings)."""
        pruned = {int(layer): [int(h) for h in heads] for layer, heads in data["pruned_heads"].items()}
        return cls(**{**data, "pruned_heads": pruned})


def prune_structure(model: nn.Module, tokenizer, texts: list[str], *, heads_fraction: float = 0.0,
                    ffn_fraction: float = 0.0, teacher_logits=None, teacher: nn.Module | None = None,
                    teacher_tokenizer=None, labels=None, temperature: float = 2.0, alpha: float = 0.5,
                    soft_loss: str = "kl", batch_size: int = 16, max_length: int = 128) -> StructuredPruningReport:
    """Score heads and FFN neurons once on the distillation loss (`compute_structure_importance`), then remove in
    place the `heads_fraction` least important heads overall (at least one per layer) and the `ffn_fraction` least
    important neurons of every layer (the same number in each). Arguments as in `compute_structure_importance`.

    The model then saves with `save_pretrained` and reloads with `artifacts.load_classifier`.
    """
    _check_fraction("heads_fraction", heads_fraction)
    _check_fraction("ffn_fraction", ffn_fraction)
    width_before = ffn_width(model)
    config = model.config
    heads_before = config.num_hidden_layers * config.num_attention_heads
    params_before = count_parameters(model)
    importance = compute_structure_importance(
        model, tokenizer, texts, teacher_logits=teacher_logits, teacher=teacher, teacher_tokenizer=teacher_tokenizer,
        labels=labels, temperature=temperature, alpha=alpha, soft_loss=soft_loss, batch_size=batch_size,
        max_length=max_length,
    )
    to_prune = select_heads_to_prune(importance.heads, heads_fraction)
    if to_prune:
        prune_heads(model, to_prune)
    keep = select_ffn_neurons(importance.ffn, ffn_fraction)
    if len(keep[0]) < width_before:
        prune_ffn(model, keep)
    removed = sum(len(heads) for heads in to_prune.values())
    logger.info("Pruned %d of %d attention heads %s and FFN width %d -> %d", removed, heads_before, to_prune,
                width_before, len(keep[0]))
    return StructuredPruningReport(
        heads_fraction=heads_fraction, ffn_fraction=ffn_fraction, heads_before=heads_before,
        heads_after=heads_before - removed, pruned_heads=to_prune, ffn_width_before=width_before,
        ffn_width_after=len(keep[0]), params_before=params_before, params_after=count_parameters(model),
        head_importance=importance.heads.tolist(), ffn_importance=[neurons.tolist() for neurons in importance.ffn],
    )


__all__ = [
    "StructureImportance",
    "StructuredPruningReport",
    "compute_structure_importance",
    "ffn_width",
    "prune_ffn",
    "prune_structure",
    "select_ffn_neurons",
]
