"""Transfer-learning strategies: which parameters of a pretrained classifier train, how fast, and what it costs.

`apply_strategy` turns a loaded classifier into what a `Trainer` trains under one `--strategy`:

- `full`: every parameter trains;
- `head_only`: the encoder is frozen, only the task head trains (linear probing);
- `partial`: the top `--unfreeze_top_k` encoder layers and the head train, optionally unfrozen one layer every
  `--gradual_unfreeze_every` epochs, top first (ULMFiT, Howard & Ruder 2018);
- `lora` / `ia3`: PEFT adapters (Hu et al. 2021; Liu et al. 2022) in the encoder layers, the head kept trainable
  through `modules_to_save`; saved as an adapter folder and merged into a standard model folder;
- `features` (fine-tuning only): no Trainer; mean-pooled embeddings of the frozen encoder feed a scikit-learn
  logistic regression, folded into one linear layer (`FeatureClassifier`).

`--layerwise_lr_decay D` gives each encoder layer the learning rate of the layer above times D, the head the base
rate (Sun et al. 2019, "How to Fine-Tune BERT for Text Classification?"), through optimizer parameter groups that
both the plain `Trainer` and `DistillationTrainer` receive (`strategy_trainer_kwargs`).

The "head" is everything that maps the encoder output to logits: the classifier's own modules and the encoder's
pooler when it has one (BERT's pooler feeds only the classifier).
"""

import json
import logging
import re
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader
from transformers import AutoModel, PreTrainedModel, Trainer, TrainerCallback, TrainingArguments
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.trainer_pt_utils import get_parameter_names

from .config import STRATEGIES, StrategyArguments
from .errors import StrategyError
from .modeling import count_parameters, encoder_layers, resolve_model_path

if TYPE_CHECKING:
    from peft import PeftModel

logger = logging.getLogger(__name__)

PEFT_STRATEGIES = ("lora", "ia3")
# peft's own BERT defaults: LoRA on the attention query/value projections; IA3 rescales keys, values and the
# feed-forward activations (the input of the FFN down-projection, see `_ia3_feedforward`).
# LoRA on every Linear of the layers: on TREC-6 with MiniLM-L6 (r=8) it came within 0.2 points of full fine-tuning
# at 2.1% trainable parameters, where query/value only (1.0%) missed by 1.7 points.
DEFAULT_TARGET_MODULES = {"lora": ("query", "key", "value", "dense"), "ia3": ("key", "value", "output.dense")}
# The same patterns as Trainer.get_decay_parameter_names: no weight decay on biases and norms.
_NO_DECAY = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]
FEATURES_WEIGHTS = "feature_classifier.safetensors"
FEATURES_CONFIG = "feature_classifier.json"


# ----------------------------------------------------------------------------------------------- checks and parts
def check_strategy_combination(args: StrategyArguments, allowed: tuple[str, ...] = STRATEGIES) -> None:
    """Cross-field checks that need no model; run before any data or model is loaded."""
    if args.strategy not in allowed:
        raise StrategyError(f"Unknown --strategy {args.strategy!r}: expected one of {', '.join(allowed)}.")
    if args.gradual_unfreeze_every is not None and args.strategy != "partial":
        raise StrategyError(
            f"--gradual_unfreeze_every unfreezes the top --unfreeze_top_k layers one by one, so it needs "
            f"--strategy partial; found --strategy {args.strategy}. Use --strategy partial --unfreeze_top_k K "
            "(K = the number of layers to end with), or drop --gradual_unfreeze_every."
        )
    if args.layerwise_lr_decay < 1.0 and args.strategy in ("head_only", "features"):
        raise StrategyError(
            f"--layerwise_lr_decay {args.layerwise_lr_decay} scales the learning rate of encoder layers, but "
            f"--strategy {args.strategy} trains none. Use --layerwise_lr_decay 1.0, or a strategy that trains "
            "layers (full, partial, lora, ia3)."
        )


def head_modules(model: PreTrainedModel) -> dict[str, nn.Module]:
    """The task head by module name: the classifier's modules outside the encoder, plus the encoder's pooler."""
    base = model.base_model
    head = {name: module for name, module in model.named_children()
            if module is not base and any(True for _ in module.parameters())}
    pooler = getattr(base, "pooler", None)  # BERT has one, RoBERTa/DistilBERT classifiers do not
    if isinstance(pooler, nn.Module) and any(True for _ in pooler.parameters()):
        head[_module_name(model, pooler)] = pooler
    if not head:
        raise StrategyError(f"{type(model).__name__} has no task head outside its encoder: expected a "
                            "...ForSequenceClassification model.")
    return head


def _module_name(model: nn.Module, target: nn.Module) -> str:
    return next(name for name, module in model.named_modules() if module is target)


def _check_top_k(model: PreTrainedModel, top_k: int) -> list[nn.Module]:
    """The top `top_k` encoder layers, top first."""
    layers = encoder_layers(model)
    if not 1 <= top_k <= len(layers):
        raise StrategyError(
            f"--unfreeze_top_k {top_k} is larger than the model's {len(layers)} encoder layers: expected 1 to "
            f"{len(layers)}. Use --strategy full to train every layer, or a smaller K."
        )
    return list(layers)[::-1][:top_k]


def target_module_names(args: StrategyArguments) -> list[str]:
    if args.lora_target_modules is None:
        return list(DEFAULT_TARGET_MODULES[args.strategy])
    return [name.strip() for name in args.lora_target_modules.split(",") if name.strip()]


def adapter_targets(model: PreTrainedModel, names: list[str]) -> list[str]:
    """Full names of the Linear modules inside the encoder layers that the short `names` select (peft's rule:
    the name itself or any dot-suffix of it). Adapters never go into the head, which trains in full instead."""
    prefixes = _layer_prefixes(model)
    linears = {name: prefix for name, module in model.named_modules() if isinstance(module, nn.Linear)
               for prefix in prefixes if name.startswith(prefix)}
    selected = []
    for target in names:
        hits = [name for name in linears if name == target or name.endswith("." + target)]
        if not hits:
            in_layer = sorted({name[len(prefix):] for name, prefix in linears.items()})
            raise StrategyError(
                f"--lora_target_modules {target!r} matches no Linear module in the encoder layers of "
                f"{type(model).__name__}. Linear module names in each layer: {', '.join(in_layer)}. Pass "
                "comma-separated names from that list (a dot-suffix such as query or output.dense is enough)."
            )
        selected += [h for h in hits if h not in selected]
    return selected


def _layer_prefixes(model: PreTrainedModel) -> tuple[str, ...]:
    return tuple(_module_name(model, layer) + "." for layer in encoder_layers(model))


def _ia3_feedforward(model: PreTrainedModel, targets: list[str]) -> list[str]:
    """IA3 scales the input of feed-forward down-projections (the FFN activation), the output of the others."""
    intermediate = model.config.intermediate_size
    modules = dict(model.named_modules())
    return [name for name in targets if modules[name].in_features == intermediate]


def _head_save_names(model: PreTrainedModel) -> list[str]:
    """modules_to_save at Linear level (classifier, bert.pooler.dense): peft's IA3 merge only unwraps Linear copies."""
    names = []
    for prefix, module in head_modules(model).items():
        for name, sub in module.named_modules():
            if any(True for _ in sub.parameters(recurse=False)):
                names.append(f"{prefix}.{name}" if name else prefix)
    return names


# ------------------------------------------------------------------------------------------------ applying
@dataclass
class AppliedStrategy:
    """A model made ready for one strategy.

    `model` is what the Trainer trains. For PEFT strategies it is the classifier with adapters injected in place
    (`peft_model.get_base_model()`), so code that walks BERT layers (layer maps, layer-wise learning rates,
    reports) sees a plain classifier; `peft_model` is kept to save the adapter and to merge it.
    """

    name: str
    model: PreTrainedModel
    trainable_params: int
    total_params: int
    peft_model: "PeftModel | None" = None
    # Top-first encoder layers that the gradual-unfreezing callback releases one at a time.
    unfreeze_order: list[nn.Module] = field(default_factory=list)
    unfreeze_every: float | None = None


def apply_strategy(model: PreTrainedModel, args: StrategyArguments) -> AppliedStrategy:
    """Freeze or adapt `model` for `args.strategy`; every model-dependent error is raised here, before training.

    After the call exactly the parameters that will train have `requires_grad` (with gradual unfreezing: all
    those that train by the end; the callback holds them back at first).
    """
    check_strategy_combination(args)
    if args.strategy == "features":
        raise StrategyError("--strategy features trains no Trainer model: use fit_feature_classifier.")
    unfreeze_order: list[nn.Module] = []
    peft_model = None
    if args.strategy == "full":
        model.requires_grad_(True)
    elif args.strategy in ("head_only", "partial"):
        top = _check_top_k(model, args.unfreeze_top_k) if args.strategy == "partial" else []
        model.requires_grad_(False)
        for module in [*head_modules(model).values(), *top]:
            module.requires_grad_(True)
        if args.gradual_unfreeze_every is not None:
            unfreeze_order = top
    else:
        peft_model = _attach_adapter(model, args)
        model = peft_model.get_base_model()
    return AppliedStrategy(
        name=args.strategy, model=model, peft_model=peft_model, unfreeze_order=unfreeze_order,
        unfreeze_every=args.gradual_unfreeze_every if unfreeze_order else None,
        trainable_params=count_parameters(model, trainable_only=True), total_params=count_parameters(model),
    )


def _attach_adapter(model: PreTrainedModel, args: StrategyArguments) -> "PeftModel":
    from peft import IA3Config, LoraConfig, get_peft_model

    targets = adapter_targets(model, target_module_names(args))
    modules_to_save = _head_save_names(model)
    # No task_type: peft's SEQ_CLS would add the whole `classifier` module, which IA3 cannot merge for
    # RoBERTa-style heads; the Linear-level modules_to_save above cover the head of every BERT-family model.
    if args.strategy == "lora":
        config = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                            target_modules=targets, modules_to_save=modules_to_save)
    else:
        config = IA3Config(target_modules=targets, feedforward_modules=_ia3_feedforward(model, targets),
                           modules_to_save=modules_to_save)
    return get_peft_model(model, config)


# --------------------------------------------------------------------------------- optimizer and callbacks
def layerwise_param_groups(model: PreTrainedModel, learning_rate: float, decay: float, weight_decay: float,
                           include: set[int] | None = None) -> list[dict]:
    """AdamW parameter groups: the head at `learning_rate`, encoder layer i of L at lr * decay^(L - i), the
    embeddings (and anything else below the layers) at lr * decay^(L + 1); each split into decayed / not decayed.

    `include` holds the ids of the parameters to optimise (default: those with requires_grad). Every group has a
    `name` ("head", "layer.3", "embeddings") and only non-empty groups are returned.
    """
    include = {id(p) for p in model.parameters() if p.requires_grad} if include is None else include
    layers = encoder_layers(model)
    depth = {id(p): i for i, layer in enumerate(layers) for p in layer.parameters()}
    head = {id(p) for module in head_modules(model).values() for p in module.parameters()}
    no_decay_names = set(n for n, _ in model.named_parameters()) - set(
        get_parameter_names(model, [nn.LayerNorm], _NO_DECAY))
    groups: dict[tuple[str, bool], dict] = {}
    for name, param in model.named_parameters():
        if id(param) not in include:
            continue
        if id(param) in head:
            group, lr = "head", learning_rate
        elif id(param) in depth:
            group, lr = f"layer.{depth[id(param)]}", learning_rate * decay ** (len(layers) - depth[id(param)])
        else:
            group, lr = "embeddings", learning_rate * decay ** (len(layers) + 1)
        decayed = name not in no_decay_names
        entry = groups.setdefault((group, decayed), {"name": group, "params": [], "lr": lr,
                                                     "weight_decay": weight_decay if decayed else 0.0})
        entry["params"].append(param)
    return list(groups.values())


class GradualUnfreezingCallback(TrainerCallback):
    """Holds the partial strategy's top layers frozen at first, then releases one every `every` epochs, top first.

    Stage s = floor(epoch / every) trains the head and the top min(s, K) layers. `history` records
    (global_step, number of unfrozen layers) at each change.
    """

    def __init__(self, layers_top_first: list[nn.Module], every: float):
        self.layers = layers_top_first
        self.every = every
        self.unfrozen = -1
        self.history: list[tuple[int, int]] = []

    def _apply(self, epoch: float, step: int) -> None:
        count = min(len(self.layers), int(epoch / self.every + 1e-9))
        if count != self.unfrozen:
            for i, layer in enumerate(self.layers):
                layer.requires_grad_(i < count)
            self.unfrozen = count
            self.history.append((step, count))
            logger.info("Gradual unfreezing: %d of %d top layers train from step %d.", count, len(self.layers), step)

    def on_train_begin(self, args, state, control, **kwargs):
        self._apply(state.epoch or 0.0, state.global_step)

    def on_step_begin(self, args, state, control, **kwargs):
        self._apply(state.epoch or 0.0, state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        for layer in self.layers:  # the saved model and any later training see the strategy's full trainable set
            layer.requires_grad_(True)


def strategy_trainer_kwargs(applied: AppliedStrategy, args: TrainingArguments) -> dict:
    """Extra `Trainer(...)` / `DistillationTrainer(...)` arguments: callbacks and, when the strategy needs them,
    the optimizer's parameter groups (through `optimizer_cls_and_kwargs`, so --optim is still honoured and
    DistillationTrainer still appends its projector group)."""
    kwargs: dict = {}
    decay = args.layerwise_lr_decay
    if applied.unfreeze_order:
        if args.world_size > 1:
            raise StrategyError(
                "--gradual_unfreeze_every changes which parameters need gradients during training, which "
                f"DistributedDataParallel does not allow (world size {args.world_size}). Run on one process, or "
                "drop --gradual_unfreeze_every."
            )
        kwargs["callbacks"] = [GradualUnfreezingCallback(applied.unfreeze_order, applied.unfreeze_every)]
    if decay < 1.0 or applied.unfreeze_order:
        # Built now, while the layers that unfreeze later still have requires_grad, so they are in a group.
        groups = layerwise_param_groups(applied.model, args.learning_rate, decay, args.weight_decay)
        optimizer_cls, optimizer_kwargs = Trainer.get_optimizer_cls_and_kwargs(args, applied.model)
        kwargs["optimizer_cls_and_kwargs"] = (optimizer_cls, {**optimizer_kwargs, "params": groups})
    return kwargs


# ---------------------------------------------------------------------------------------------- saving
def save_trained_model(applied: AppliedStrategy, trainer: Trainer, folder: str | Path,
                       adapter_folder: str | Path, merge: bool = True) -> PreTrainedModel:
    """Save what the strategy trained; return the model to evaluate and deploy.

    Non-PEFT strategies: a standard model folder. PEFT: the adapter (+ tokenizer) in `adapter_folder`, and with
    `merge` the adapter merged into the weights and saved as a standard model folder in `folder`, which loads
    with AutoModelForSequenceClassification and needs no peft. Merging happens in place, so `trainer.model`
    is the merged model afterwards.
    """
    if applied.peft_model is None:
        trainer.save_model(str(folder))
        return trainer.model
    if trainer.args.should_save:
        applied.peft_model.save_pretrained(str(adapter_folder))
        if trainer.processing_class is not None:
            trainer.processing_class.save_pretrained(str(adapter_folder))
    if not merge:
        return trainer.model
    merged = applied.peft_model.merge_and_unload()
    trainer.save_model(str(folder))
    return merged


# ------------------------------------------------------------------------------------------- cost
@dataclass
class TrainingCost:
    """What one training run cost: parameters it trained, wall time, peak memory."""

    trainable_params: int = 0
    total_params: int = 0
    train_runtime_s: float = 0.0
    peak_memory_mb: float = 0.0
    peak_memory_kind: str = ""

    def as_dict(self) -> dict:
        return {"trainable_params": self.trainable_params, "total_params": self.total_params,
                "trainable_fraction": round(self.trainable_params / self.total_params, 6),
                "train_runtime_s": round(self.train_runtime_s, 2), "peak_memory_mb": round(self.peak_memory_mb, 1),
                "peak_memory_kind": self.peak_memory_kind}


def _reset_peak_memory(device: torch.device) -> str:
    """Start a fresh peak; returns what will be measured."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return "cuda_max_allocated"
    try:
        # Linux: writing 5 resets the process's peak RSS (VmHWM, also what ru_maxrss reports).
        Path("/proc/self/clear_refs").write_text("5")
        return "cpu_peak_rss"
    except OSError as err:
        logger.info("Cannot reset the peak RSS (%s): reporting the peak since the process started.", err)
        return "cpu_peak_rss_since_process_start"


def _peak_memory_mb(device: torch.device, kind: str) -> float:
    if kind == "cuda_max_allocated":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if kind == "cpu_peak_rss":  # the peak that clear_refs reset (ru_maxrss may also hold exited threads' peaks)
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE).group(1)) / 2**10
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


@contextmanager
def measure_training(device: torch.device) -> Iterator[TrainingCost]:
    """Times the block and records its peak memory (CUDA allocations on GPU, resident set size on CPU)."""
    cost = TrainingCost(peak_memory_kind=_reset_peak_memory(device))
    start = time.perf_counter()
    yield cost
    cost.train_runtime_s = time.perf_counter() - start
    cost.peak_memory_mb = _peak_memory_mb(device, cost.peak_memory_kind)


def strategy_summary(args: StrategyArguments) -> dict:
    """The strategy and the arguments it used, for report.json."""
    summary = {"strategy": args.strategy, "layerwise_lr_decay": args.layerwise_lr_decay}
    if args.strategy == "partial":
        summary.update(unfreeze_top_k=args.unfreeze_top_k, gradual_unfreeze_every=args.gradual_unfreeze_every)
    if args.strategy in PEFT_STRATEGIES:
        summary.update(target_modules=target_module_names(args), merge_adapter=args.merge_adapter)
    if args.strategy == "lora":
        summary.update(lora_r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout)
    if args.strategy == "features":
        summary.update(features_logreg_c=args.features_logreg_c, pooling="mean")
    return summary


# --------------------------------------------------------------------------------------- features strategy
class FeatureClassifier(nn.Module):
    """A frozen encoder, masked mean pooling and one linear layer (a fitted logistic regression); returns logits.

    Saved as FOLDER/encoder/ (a standard AutoModel folder with the tokenizer) plus FOLDER/feature_classifier.json
    (labels, pooling) and FOLDER/feature_classifier.safetensors (weight, bias): there is no config.json at the top,
    so nothing mistakes it for an AutoModelForSequenceClassification folder.
    """

    def __init__(self, encoder: PreTrainedModel, weight: torch.Tensor, bias: torch.Tensor, labels: list[str]):
        super().__init__()
        self.encoder = encoder.eval().requires_grad_(False)
        self.classifier = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.classifier.weight.copy_(weight)
            self.classifier.bias.copy_(bias)
        self.labels = list(labels)

    @property
    def base_model(self) -> PreTrainedModel:
        """The encoder, so nlp_reuse.modeling.num_layers and friends work on this model too."""
        return self.encoder

    def forward(self, input_ids, attention_mask, token_type_ids=None, **unused) -> SequenceClassifierOutput:
        pooled = mean_pool(self.encoder, input_ids, attention_mask, token_type_ids)  # (batch, hidden)
        return SequenceClassifierOutput(logits=self.classifier(pooled))

    def save_pretrained(self, folder: str | Path, tokenizer=None) -> None:
        folder = Path(folder)
        self.encoder.save_pretrained(folder / "encoder")
        if tokenizer is not None:
            tokenizer.save_pretrained(folder / "encoder")
        save_file({"weight": self.classifier.weight.detach().contiguous().cpu(),
                   "bias": self.classifier.bias.detach().contiguous().cpu()}, str(folder / FEATURES_WEIGHTS))
        (folder / FEATURES_CONFIG).write_text(json.dumps(
            {"labels": self.labels, "pooling": "mean", "encoder": "encoder"}, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "FeatureClassifier":
        folder = Path(folder)
        if not (folder / FEATURES_CONFIG).is_file():
            raise StrategyError(f"{folder} has no {FEATURES_CONFIG}: expected a folder written by "
                                "scripts/finetune.py --strategy features.")
        config = json.loads((folder / FEATURES_CONFIG).read_text())
        weights = load_file(str(folder / FEATURES_WEIGHTS))
        encoder = AutoModel.from_pretrained(folder / config["encoder"])
        return cls(encoder, weights["weight"], weights["bias"], config["labels"])


def mean_pool(encoder: PreTrainedModel, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
    """Mean of the last hidden states over real (unpadded) tokens."""
    extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
    hidden = encoder(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state  # (b, seq, h)
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (batch, seq, 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)


def _batches(dataset, collator, batch_size: int, device: torch.device) -> Iterator[dict]:
    columns = [c for c in dataset.column_names if c in ("input_ids", "attention_mask", "token_type_ids")]
    for batch in DataLoader(dataset.select_columns(columns), batch_size=batch_size, collate_fn=collator):
        yield {k: v.to(device) for k, v in batch.items()}


@torch.no_grad()
def extract_features(encoder: PreTrainedModel, dataset, collator, batch_size: int,
                     device: torch.device) -> np.ndarray:
    """Mean-pooled embeddings of a tokenized dataset, (num_examples, hidden)."""
    encoder = encoder.to(device).eval()
    return np.concatenate([mean_pool(encoder, **batch).float().cpu().numpy()
                           for batch in _batches(dataset, collator, batch_size, device)])


@torch.no_grad()
def predict_logits(model: nn.Module, dataset, collator, batch_size: int, device: torch.device) -> np.ndarray:
    model = model.to(device).eval()
    return np.concatenate([model(**batch).logits.float().cpu().numpy()
                           for batch in _batches(dataset, collator, batch_size, device)])


def fit_feature_classifier(encoder: PreTrainedModel, train_dataset, collator, labels: list[str], c: float = 1.0,
                           batch_size: int = 64, device: torch.device | str = "cpu") -> FeatureClassifier:
    """Fit a standardised logistic regression on the frozen encoder's mean-pooled embeddings.

    The scaler is folded into the linear layer: logits = W (x - mu) / s + b = (W / s) x + (b - W mu / s), so the
    saved model is one Linear and predicts exactly what the scikit-learn pipeline predicts.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    device = torch.device(device)
    features = extract_features(encoder, train_dataset, collator, batch_size, device)
    targets = np.asarray(train_dataset["label"])
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
    pipeline.fit(features, targets)
    scaler, logreg = pipeline[0], pipeline[-1]
    coef, intercept = logreg.coef_, logreg.intercept_
    if coef.shape[0] == 1:  # binary: sklearn keeps one row for classes_[1]; logits (0, z) give the same softmax
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], intercept])
    weight = np.zeros((len(labels), features.shape[1]))
    bias = np.full(len(labels), -1e4)  # a class missing from the (sub-sampled) train split is never predicted
    for row, class_id in enumerate(logreg.classes_):
        weight[class_id] = coef[row] / scaler.scale_
        bias[class_id] = intercept[row] - (coef[row] * scaler.mean_ / scaler.scale_).sum()
    missing = sorted(set(range(len(labels))) - set(int(c) for c in logreg.classes_))
    if missing:
        logger.warning("Classes %s have no training example: the feature classifier never predicts them.",
                       [labels[i] for i in missing])
    return FeatureClassifier(encoder.cpu(), torch.tensor(weight, dtype=torch.float32),
                             torch.tensor(bias, dtype=torch.float32), labels)


def load_encoder(name_or_path: str) -> PreTrainedModel:
    """The bare encoder of a pretrained model or of a fine-tuned classifier (its head is dropped)."""
    return AutoModel.from_pretrained(resolve_model_path(name_or_path))


def finetune_features(args, tokenized, labels: list[str], tokenizer,
                      out: Path) -> tuple[FeatureClassifier, dict, dict, TrainingCost]:
    """The features strategy of scripts/finetune.py: fit, save to `out`, and evaluate on validation and test.

    Returns the model, validation and test metrics (keyed like Trainer's: eval_accuracy, test_macro_f1, ...) and
    the cost. `args` is a FinetuneArguments.
    """
    from transformers import DataCollatorWithPadding

    from .evaluation import classification_metrics

    collator = DataCollatorWithPadding(tokenizer)
    encoder = load_encoder(args.model_name_or_path)
    with measure_training(args.device) as cost:
        model = fit_feature_classifier(encoder, tokenized["train"], collator, labels, c=args.features_logreg_c,
                                       batch_size=args.per_device_eval_batch_size, device=args.device)
    cost.trainable_params = count_parameters(model, trainable_only=True)
    cost.total_params = count_parameters(model)
    if args.should_save:
        model.save_pretrained(out, tokenizer)
    metrics = {}
    for split, prefix in (("validation", "eval"), ("test", "test")):
        logits = predict_logits(model, tokenized[split], collator, args.per_device_eval_batch_size, args.device)
        scores = classification_metrics(logits.argmax(-1), np.asarray(tokenized[split]["label"]))
        metrics[prefix] = {f"{prefix}_{k}": v for k, v in scores.items()}
    return model, metrics["eval"], metrics["test"], cost


# ------------------------------------------------------------------------------------------- comparison table
def strategy_row(report: dict) -> dict:
    """One row of the strategy comparison from a scripts/finetune.py report.json."""
    ft, model = report["finetuning"], report["model"]
    return {
        "strategy": ft["strategy"], "trainable_params": ft["trainable_params"],
        "trainable_fraction": ft["trainable_fraction"], "train_runtime_s": ft["train_runtime_s"],
        "peak_memory_mb": ft["peak_memory_mb"],
        "learning_rate": None if ft["strategy"] == "features" else ft["learning_rate"],
        "accuracy": model["test"]["accuracy"], "macro_f1": model["test"]["macro_f1"],
        "latency_ms": model["latency_ms"],
    }


def format_strategy_table(rows: list[dict], markdown: bool = False) -> str:
    """The comparison as an aligned text table, or as a Markdown table."""
    header = ("strategy", "trainable params", "trainable %", "train time s", "peak MB", "learning rate",
              "accuracy", "macro-F1", "latency ms")
    cells = [header] + [(
        r["strategy"], f"{r['trainable_params']:,}", f"{100 * r['trainable_fraction']:.2f}",
        f"{r['train_runtime_s']:.1f}", f"{r['peak_memory_mb']:.0f}",
        "-" if r["learning_rate"] is None else f"{r['learning_rate']:g}", f"{r['accuracy']:.4f}",
        f"{r['macro_f1']:.4f}", f"{r['latency_ms']:.2f}",
    ) for r in rows]
    if markdown:
        lines = ["| " + " | ".join(row) + " |" for row in cells]
        lines.insert(1, "|" + "---|" * len(header))
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
