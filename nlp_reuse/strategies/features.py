"""The `features` strategy (fine-tuning only): no Trainer; mean-pooled embeddings of the frozen encoder feed a
scikit-learn logistic regression, folded into one linear layer (`FeatureClassifier`)."""

import json
import logging
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from nlp_reuse.errors import StrategyError
from nlp_reuse.modeling import count_parameters, resolve_model_path
from nlp_reuse.predict import predict_logits
from nlp_reuse.strategies.cost import TrainingCost, measure_training

logger = logging.getLogger(__name__)

FEATURES_WEIGHTS = "feature_classifier.safetensors"
FEATURES_CONFIG = "feature_classifier.json"


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


def extract_features(encoder: PreTrainedModel, dataset, collator, batch_size: int,
                     device: torch.device) -> np.ndarray:
    """Mean-pooled embeddings of a tokenized dataset, (num_examples, hidden)."""
    return predict_logits(encoder, dataset, collator=collator, batch_size=batch_size, device=device,
                          output=lambda batch: mean_pool(encoder, **batch))


def fit_feature_classifier(encoder: PreTrainedModel, train_dataset, collator, labels: list[str], c: float = 1.0,
                           batch_size: int = 64, device: torch.device | str = "cpu") -> FeatureClassifier:
    """Fit a standardised logistic regression on the frozen encoder's mean-pooled embeddings.

    The scaler is folded into the linear layer: logits = W (x - mu) / s + b = (W / s) x + (b - W mu / s), so the
    saved model is one Linear and predicts exactly what the scikit-learn pipeline predicts.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = extract_features(encoder, train_dataset, collator, batch_size, torch.device(device))
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

    from nlp_reuse.evaluation import classification_metrics

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
        logits = predict_logits(model, tokenized[split], collator=collator,
                                batch_size=args.per_device_eval_batch_size, device=args.device)
        scores = classification_metrics(logits.argmax(-1), np.asarray(tokenized[split]["label"]))
        metrics[prefix] = {f"{prefix}_{k}": v for k, v in scores.items()}
    return model, metrics["eval"], metrics["test"], cost
