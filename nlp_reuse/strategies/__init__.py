"""Transfer-learning strategies: which parameters of a pretrained classifier train, how fast, and what it costs.

One module per concern:

- `parts`: the task head and the top encoder layers of a classifier;
- `freezing`: `apply_strategy` turns a loaded classifier into what a `Trainer` trains under one `--strategy`
  (full, head_only, partial with gradual unfreezing, lora, ia3), and `save_trained_model` saves it;
- `adapters`: the PEFT strategies (lora, ia3): target modules, injection;
- `param_groups`: layer-wise learning-rate decay as optimizer parameter groups, and the Trainer arguments;
- `features`: the `features` strategy, a logistic regression on the frozen encoder's mean-pooled embeddings;
- `cost`: training cost (time, peak memory), the report summary and the strategy comparison table.

Everything the rest of the package imports is re-exported here.
"""

from nlp_reuse.errors import StrategyError
from nlp_reuse.predict import predict_logits
from nlp_reuse.strategies.adapters import (
    DEFAULT_TARGET_MODULES,
    PEFT_STRATEGIES,
    adapter_targets,
    attach_adapter,
    target_module_names,
)
from nlp_reuse.strategies.cost import (
    TrainingCost,
    format_strategy_table,
    measure_training,
    strategy_row,
    strategy_summary,
)
from nlp_reuse.strategies.features import (
    FEATURES_CONFIG,
    FEATURES_WEIGHTS,
    FeatureClassifier,
    extract_features,
    finetune_features,
    fit_feature_classifier,
    load_encoder,
    mean_pool,
)
from nlp_reuse.strategies.freezing import (
    AppliedStrategy,
    GradualUnfreezingCallback,
    apply_strategy,
    check_strategy_combination,
    save_trained_model,
)
from nlp_reuse.strategies.param_groups import layerwise_param_groups, strategy_trainer_kwargs
from nlp_reuse.strategies.parts import head_modules, top_layers

__all__ = [
    "DEFAULT_TARGET_MODULES", "FEATURES_CONFIG", "FEATURES_WEIGHTS", "PEFT_STRATEGIES", "AppliedStrategy",
    "FeatureClassifier", "GradualUnfreezingCallback", "StrategyError", "TrainingCost", "adapter_targets",
    "apply_strategy", "attach_adapter", "check_strategy_combination", "extract_features", "finetune_features",
    "fit_feature_classifier", "format_strategy_table", "head_modules", "layerwise_param_groups", "load_encoder",
    "mean_pool", "measure_training", "predict_logits", "save_trained_model", "strategy_row", "strategy_summary",
    "strategy_trainer_kwargs", "target_module_names", "top_layers",
]
