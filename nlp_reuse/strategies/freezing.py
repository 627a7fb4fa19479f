"""Which parameters train under each `--strategy`, applied to a loaded classifier before the Trainer sees it, and
what is saved afterwards.

- `full`: every parameter trains;
- `head_only`: the encoder is frozen, only the task head trains (linear probing);
- `partial`: the top `--unfreeze_top_k` encoder layers and the head train, optionally unfrozen one layer every
  `--gradual_unfreeze_every` epochs, top first (ULMFiT, Howard & Ruder 2018; `GradualUnfreezingCallback`);
- `lora` / `ia3`: PEFT adapters, see `adapters`.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn
from transformers import PreTrainedModel, Trainer, TrainerCallback

from nlp_reuse.errors import StrategyError
from nlp_reuse.modeling import count_parameters
from nlp_reuse.strategies.adapters import attach_adapter
from nlp_reuse.strategies.parts import head_modules, top_layers
from nlp_reuse.strategy_config import STRATEGIES, StrategyArguments

if TYPE_CHECKING:
    from peft import PeftModel

logger = logging.getLogger(__name__)


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
        top = top_layers(model, args.unfreeze_top_k) if args.strategy == "partial" else []
        model.requires_grad_(False)
        for module in [*head_modules(model).values(), *top]:
            module.requires_grad_(True)
        if args.gradual_unfreeze_every is not None:
            unfreeze_order = top
    else:
        peft_model = attach_adapter(model, args)
        model = peft_model.get_base_model()
    return AppliedStrategy(
        name=args.strategy, model=model, peft_model=peft_model, unfreeze_order=unfreeze_order,
        unfreeze_every=args.gradual_unfreeze_every if unfreeze_order else None,
        trainable_params=count_parameters(model, trainable_only=True), total_params=count_parameters(model),
    )


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
