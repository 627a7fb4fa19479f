"""nlp_reuse: fine-tune, distill, compress and publish BERT-family text classifiers, with measured numbers."""

from nlp_reuse.config import DataArguments, DistillationArguments, DistillScriptArguments, FinetuneArguments
from nlp_reuse.data import DataError, load_splits, tokenize_splits
from nlp_reuse.layer_map import LayerProjector, parse_layer_map
from nlp_reuse.losses import HIDDEN_LOSSES, attention_kl_loss, hidden_cosine_loss, hidden_mse_loss, kd_kl_loss, kd_loss
from nlp_reuse.modeling import (
    ModelError,
    check_compatibility,
    load_teacher,
    student_from_config,
    student_from_teacher_layers,
)
from nlp_reuse.pipeline import run_distillation, run_finetune
from nlp_reuse.strategies import FeatureClassifier, apply_strategy, layerwise_param_groups
from nlp_reuse.teacher_cache import attach_teacher_logits, load_or_compute
from nlp_reuse.trainers import DistillationTrainer

__version__ = "0.1.0"

__all__ = [
    "FeatureClassifier", "HIDDEN_LOSSES", "apply_strategy", "attach_teacher_logits", "layerwise_param_groups",
    "load_or_compute", "DataArguments", "DataError", "DistillationArguments", "DistillScriptArguments",
    "DistillationTrainer",
    "FinetuneArguments", "LayerProjector", "ModelError", "attention_kl_loss", "check_compatibility",
    "hidden_cosine_loss", "hidden_mse_loss", "kd_kl_loss", "kd_loss", "load_splits", "load_teacher",
    "parse_layer_map", "run_distillation", "run_finetune", "student_from_config", "student_from_teacher_layers",
    "tokenize_splits",
]
