"""Optimizer parameter groups: `--layerwise_lr_decay D` gives each encoder layer the learning rate of the layer
above times D and the head the base rate (Sun et al. 2019, "How to Fine-Tune BERT for Text Classification?"); both
the plain `Trainer` and `DistillationTrainer` receive them through `strategy_trainer_kwargs`."""

from torch import nn
from transformers import PreTrainedModel, Trainer, TrainingArguments
from transformers.trainer_pt_utils import get_parameter_names

from nlp_reuse.errors import StrategyError
from nlp_reuse.modeling import encoder_layers
from nlp_reuse.strategies.freezing import AppliedStrategy, GradualUnfreezingCallback
from nlp_reuse.strategies.parts import head_modules

# The same patterns as Trainer.get_decay_parameter_names: no weight decay on biases and norms.
_NO_DECAY = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]


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
