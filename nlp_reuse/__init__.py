"""nlp_reuse: fine-tune, distill, compress and publish BERT-family text classifiers, with measured numbers."""

from .config import DataArguments, DistillationArguments, DistillScriptArguments, FinetuneArguments
from .data import DataError, load_splits, tokenize_splits
from .layer_map import LayerProjector, parse_layer_map
from .losses import HIDDEN_LOSSES, attention_kl_loss, hidden_cosine_loss, hidden_mse_loss, kd_kl_loss, kd_loss
from .modeling import (
    ModelError, check_compatibility, load_teacher, student_from_config, student_from_teacher_layers,
)
from .pipeline import run_distillation, run_finetune
from .strategies import FeatureClassifier, apply_strategy, layerwise_param_groups
from .teacher_cache import attach_teacher_logits, load_or_compute
from .trainers import DistillationTrainer

__version__ = "0.1.0"

__all__ = [
    "FeatureClassifier", "HIDDEN_LOSSES", "apply_strategy", "attach_teacher_logits", "layerwise_param_groups",
    "load_or_compute", "DataArguments", "DataError", "DistillationArguments", "DistillScriptArguments", "DistillationTrainer",
    "FinetuneArguments", "LayerProjector", "ModelError", "attention_kl_loss", "check_compatibility",
    "hidden_cosine_loss", "hidden_mse_loss", "kd_kl_loss", "kd_loss", "load_splits", "load_teacher",
    "parse_layer_map", "run_distillation", "run_finetune", "student_from_config", "student_from_teacher_layers",
    "tokenize_splits",
]
