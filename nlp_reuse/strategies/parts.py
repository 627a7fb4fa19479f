"""The parts of a sequence classifier that strategies train or freeze: its task head and its top encoder layers.

The "head" is everything that maps the encoder output to logits: the classifier's own modules and the encoder's
pooler when it has one (BERT's pooler feeds only the classifier).
"""

from torch import nn
from transformers import PreTrainedModel

from nlp_reuse.errors import StrategyError
from nlp_reuse.modeling import encoder_layers


def head_modules(model: PreTrainedModel) -> dict[str, nn.Module]:
    """The task head by module name: the classifier's modules outside the encoder, plus the encoder's pooler."""
    base = model.base_model
    head = {name: module for name, module in model.named_children()
            if module is not base and any(True for _ in module.parameters())}
    pooler = getattr(base, "pooler", None)  # BERT has one, RoBERTa/DistilBERT classifiers do not
    if isinstance(pooler, nn.Module) and any(True for _ in pooler.parameters()):
        head[module_name(model, pooler)] = pooler
    if not head:
        raise StrategyError(f"{type(model).__name__} has no task head outside its encoder: expected a "
                            "...ForSequenceClassification model.")
    return head


def module_name(model: nn.Module, target: nn.Module) -> str:
    return next(name for name, module in model.named_modules() if module is target)


def top_layers(model: PreTrainedModel, top_k: int) -> list[nn.Module]:
    """The top `top_k` encoder layers, top first."""
    layers = encoder_layers(model)
    if not 1 <= top_k <= len(layers):
        raise StrategyError(
            f"--unfreeze_top_k {top_k} is larger than the model's {len(layers)} encoder layers: expected 1 to "
            f"{len(layers)}. Use --strategy full to train every layer, or a smaller K."
        )
    return list(layers)[::-1][:top_k]
