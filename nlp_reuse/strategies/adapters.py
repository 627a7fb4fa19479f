"""PEFT strategies `lora` and `ia3` (Hu et al. 2021; Liu et al. 2022): adapters in the encoder layers, the head kept
trainable through `modules_to_save`; saved as an adapter folder and merged into a standard model folder."""

from typing import TYPE_CHECKING

from torch import nn
from transformers import PreTrainedModel

from nlp_reuse.errors import StrategyError
from nlp_reuse.modeling import encoder_layers
from nlp_reuse.strategies.parts import head_modules, module_name
from nlp_reuse.strategy_config import StrategyArguments

if TYPE_CHECKING:
    from peft import PeftModel

PEFT_STRATEGIES = ("lora", "ia3")
# peft's own BERT defaults: LoRA on the attention query/value projections; IA3 rescales keys, values and the
# feed-forward activations (the input of the FFN down-projection, see `_ia3_feedforward`).
# LoRA on every Linear of the layers: on TREC-6 with MiniLM-L6 (r=8) it came within 0.2 points of full fine-tuning
# at 2.1% trainable parameters, where query/value only (1.0%) missed by 1.7 points.
DEFAULT_TARGET_MODULES = {"lora": ("query", "key", "value", "dense"), "ia3": ("key", "value", "output.dense")}


def target_module_names(args: StrategyArguments) -> list[str]:
    if args.lora_target_modules is None:
        return list(DEFAULT_TARGET_MODULES[args.strategy])
    return [name.strip() for name in args.lora_target_modules.split(",") if name.strip()]


def adapter_targets(model: PreTrainedModel, names: list[str]) -> list[str]:
    """Full names of the Linear modules inside the encoder layers that the short `names` select (peft's rule:
    the name itself or any dot-suffix of it). Adapters never go into the head, which trains in full instead."""
    prefixes = tuple(module_name(model, layer) + "." for layer in encoder_layers(model))
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


def attach_adapter(model: PreTrainedModel, args: StrategyArguments) -> "PeftModel":
    """Inject `args.strategy`'s adapters into `model` in place; returns the PeftModel that wraps it."""
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
