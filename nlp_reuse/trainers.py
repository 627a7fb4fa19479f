"""`DistillationTrainer`: a `transformers.Trainer` whose loss learns from a frozen teacher; `OutsideModulesMixin`:
the share of a Trainer subclass whose loss also trains modules outside the model (the distillation projector, the
domain classifier of nlp_reuse.domain).

Only `__init__`, `compute_loss`, the signature columns (to keep cached teacher logits) and, through the mixin, the
optimizer, checkpointing and gradient clipping of the outside modules are overridden, so checkpointing, logging,
mixed precision, gradient accumulation and DDP come from `Trainer`.
"""

import contextlib
import copy
import itertools
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel, Trainer, TrainerCallback
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from nlp_reuse.config import DistillationArguments
from nlp_reuse.layer_map import LayerProjector, parse_layer_map
from nlp_reuse.losses import attention_kl_loss, get_hidden_loss, kd_loss
from nlp_reuse.modeling import num_layers
from nlp_reuse.teacher_cache import LOGITS_COLUMN

PROJECTOR_FILE_NAME = "projector.safetensors"
TEACHER_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_teacher_dtype(args: DistillationArguments) -> torch.dtype:
    """`auto` follows the mixed-precision flag: a bf16/fp16 run gets a bf16/fp16 teacher, else fp32."""
    if args.teacher_dtype == "auto":
        return torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else torch.float32
    return TEACHER_DTYPES[args.teacher_dtype]


class _ZeroOutsideGrads(TrainerCallback):
    """Trainer zeroes only the model it wraps after each step; the outside modules' gradients would otherwise pile
    up across steps. on_step_end also runs when an fp16 overflow made the scaler skip the optimizer step."""

    def __init__(self, modules: dict[str, "_OutsideModule"]):
        self.modules = modules

    def on_step_end(self, args, state, control, **kwargs):
        for outside in self.modules.values():
            outside.module.zero_grad(set_to_none=True)


@dataclass
class _OutsideModule:
    module: nn.Module  # as prepared by the accelerator (its own DDP wrapper in multi-process runs)
    written_by: str  # the kind of run whose checkpoints hold it, for the missing-file error
    same_flags: str  # the flags a resume must share with that run, e.g. " with the same --layer_map"


class OutsideModulesMixin:
    """For a `Trainer` subclass (listed before `Trainer` in its bases) whose loss trains modules that live outside
    `self.model`. Trainer optimizes, clips, checkpoints and reports only `self.model`; a module passed to
    `register_outside_module` is added to the optimizer (no weight decay), counted in gradient clipping and the
    logged grad norm, zeroed after each step, saved in every checkpoint as its own safetensors file beside the
    optimizer state it belongs to, and restored with it on resume and with the best checkpoint."""

    def __init__(self, *args, **kwargs):
        self._outside_modules: dict[str, _OutsideModule] = {}  # by checkpoint file name
        super().__init__(*args, **kwargs)
        self.add_callback(_ZeroOutsideGrads(self._outside_modules))

    def register_outside_module(self, module: nn.Module, file_name: str, written_by: str,
                                same_flags: str = "") -> nn.Module:
        """Train `module` with the model and checkpoint it as `file_name`; returns it prepared by the accelerator
        (its own DDP wrapper keeps it in sync across processes): call it through the returned module."""
        prepared = self.accelerator.prepare_model(module)
        self._outside_modules[file_name] = _OutsideModule(prepared, written_by, same_flags)
        return prepared

    def create_optimizer(self, *args, **kwargs):
        optimizer = super().create_optimizer(*args, **kwargs)
        in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
        for outside in self._outside_modules.values():
            params = [p for p in outside.module.parameters() if id(p) not in in_optimizer]
            if params:
                optimizer.add_param_group({"params": params, "weight_decay": 0.0})
        return optimizer

    def _trainable_parameters(self, model):
        return itertools.chain(model.parameters(),
                               *(outside.module.parameters() for outside in self._outside_modules.values()))

    def _clip_grad_norm(self, model):
        if not self._outside_modules:
            return super()._clip_grad_norm(model)
        return self.accelerator.clip_grad_norm_(self._trainable_parameters(model), self.args.max_grad_norm)

    def _get_grad_norm(self, model, grad_norm=None):
        if grad_norm is None and self._outside_modules:
            grad_norm = self.accelerator.clip_grad_norm_(self._trainable_parameters(model), float("inf"))
        return super()._get_grad_norm(model, grad_norm=grad_norm)

    def _save_checkpoint(self, model, trial) -> None:
        # Before Trainer's own files: trainer_state.json, written last, marks a checkpoint complete (resume "last"
        # and checkpoint rotation go by it), so a kill in between must not leave one without its outside modules.
        if self._outside_modules and self.args.should_save:  # also with save_only_model
            folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            folder.mkdir(parents=True, exist_ok=True)
            for file_name, outside in self._outside_modules.items():
                save_file(self.accelerator.unwrap_model(outside.module).state_dict(), str(folder / file_name))
        super()._save_checkpoint(model, trial)

    def _load_outside_modules(self, checkpoint: str | None) -> None:
        if checkpoint is None:
            return
        for file_name, outside in self._outside_modules.items():
            path = Path(checkpoint) / file_name
            if not path.is_file():
                raise FileNotFoundError(
                    f"Expected {path}: the checkpoint of {outside.written_by} holds it beside the optimizer state; "
                    f"found {sorted(p.name for p in Path(checkpoint).iterdir())}. Fix: resume from a checkpoint "
                    f"written by this version of nlp_reuse{outside.same_flags}, or start the run again without "
                    "--resume_from_checkpoint."
                )
            self.accelerator.unwrap_model(outside.module).load_state_dict(load_file(str(path)))

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        self._load_outside_modules(resume_from_checkpoint)

    def _load_best_model(self) -> None:
        super()._load_best_model()
        self._load_outside_modules(self.state.best_model_checkpoint)


class DistillationTrainer(OutsideModulesMixin, Trainer):
    """Trains `model` (the student) on `alpha * soft + (1 - alpha) * CE` plus optional hidden/attention terms; soft
    is `T^2 * KL` or the logit MSE (`--kd_loss`). Transfer examples (label -1: augmented or unlabeled texts) learn
    from the soft term only.

    Losses are computed per example, summed, and divided by the number of examples (gold and transfer) in the whole
    optimizer step (all accumulation micro-batches, all processes), so gradient accumulation and data parallelism
    give the same update as one large batch.
    """

    args: DistillationArguments

    def __init__(self, model: PreTrainedModel, teacher_model: PreTrainedModel, args: DistillationArguments,
                 **kwargs):
        super().__init__(model=model, args=args, **kwargs)
        # Half-precision weights are cast once here, not per step by autocast, on a copy: the caller's teacher is
        # measured for the report and seeds the baseline as it was given.
        self.teacher_dtype = resolve_teacher_dtype(args)
        if any(p.dtype != self.teacher_dtype for p in teacher_model.parameters()):
            teacher_model = copy.deepcopy(teacher_model).to(self.teacher_dtype)
        teacher_model.requires_grad_(False)
        # evaluation_mode: placed on the device (and under mixed-precision autocast) but never wrapped in DDP.
        self.teacher = self.accelerator.prepare_model(teacher_model.eval(), evaluation_mode=True)
        if args.torch_compile:
            self.teacher = torch.compile(self.teacher, backend=args.torch_compile_backend or "inductor",
                                         mode=args.torch_compile_mode, dynamic=True)
        self.use_hidden = args.hidden_loss_weight > 0
        self.use_attention = args.attention_loss_weight > 0
        self.layer_pairs = parse_layer_map(
            args.layer_map, num_layers(model), num_layers(teacher_model), args.distill_embeddings
        ) if self.use_hidden or self.use_attention else []
        self.projector = None
        if self.use_hidden:
            self.hidden_loss_fn = get_hidden_loss(args.hidden_loss)
            projector = LayerProjector(len(self.layer_pairs), model.config.hidden_size,
                                       teacher_model.config.hidden_size)
            if projector.proj is not None:
                self.projector = self.register_outside_module(
                    projector, PROJECTOR_FILE_NAME, "a hidden-state distillation run with a learned projection",
                    " with the same --layer_map")
        # We normalise by num_items_in_batch ourselves; this makes Trainer count it and not rescale the loss.
        self.model_accepts_loss_kwargs = True

    def _set_signature_columns_if_needed(self):
        # Keep cached teacher logits through remove_unused_columns (they are no argument of the student's forward).
        super()._set_signature_columns_if_needed()
        if LOGITS_COLUMN not in self._signature_columns:
            self._signature_columns.append(LOGITS_COLUMN)

    def _half_precision(self):
        """Autocast for the teacher and the projections: Trainer's mixed precision covers the student only."""
        if self.teacher_dtype == torch.float32 and not (self.args.bf16 or self.args.fp16):
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if (self.args.bf16 or self.teacher_dtype == torch.bfloat16) else torch.float16
        return torch.autocast(device_type=self.accelerator.device.type, dtype=dtype)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.get("labels")
        cached_logits = inputs.get(LOGITS_COLUMN)
        features = {k: v for k, v in inputs.items() if k not in ("labels", LOGITS_COLUMN)}
        want_hidden, want_attn = self.use_hidden, self.use_attention
        student_out = model(**features, output_hidden_states=want_hidden, output_attentions=want_attn)
        teacher_out = None
        if cached_logits is None or want_hidden or want_attn:
            with torch.no_grad(), self._half_precision():
                teacher_out = self.teacher(**features, output_hidden_states=want_hidden, output_attentions=want_attn)
        teacher_logits = cached_logits if cached_logits is not None else teacher_out.logits

        per_example = kd_loss(student_out.logits, teacher_logits, labels, self.args.temperature, self.args.alpha,
                              soft_loss=self.args.kd_loss)
        mask = features.get("attention_mask")
        if want_hidden:
            student_h = [student_out.hidden_states[s] for s, _ in self.layer_pairs]
            if self.projector is not None:
                with self._half_precision():
                    student_h = self.projector(student_h)
            hidden = torch.stack([
                self.hidden_loss_fn(h, teacher_out.hidden_states[t], mask)
                for h, (_, t) in zip(student_h, self.layer_pairs)
            ]).mean(0)  # (batch,)
            per_example = per_example + self.args.hidden_loss_weight * hidden
        if want_attn:
            # attentions[i - 1] belongs to layer i; the embedding output (0) has none.
            attn_pairs = [(s, t) for s, t in self.layer_pairs if s > 0 and t > 0]
            attention = torch.stack([
                attention_kl_loss(student_out.attentions[s - 1], teacher_out.attentions[t - 1], mask)
                for s, t in attn_pairs
            ]).mean(0)
            per_example = per_example + self.args.attention_loss_weight * attention

        example_mask = (labels != -100).float() if labels is not None else torch.ones_like(per_example)
        total = (per_example * example_mask).sum()
        if num_items_in_batch is None:  # evaluation, or a call outside the training step
            loss = total / example_mask.sum().clamp_min(1.0)
        else:
            loss = total / num_items_in_batch
            if self.args.average_tokens_across_devices:
                # num_items_in_batch counts every process's examples, and DDP averages gradients across processes.
                loss = loss * self.accelerator.num_processes
        # Only the logits go back to prediction_step: hidden states of ragged batches cannot be concatenated.
        return (loss, SequenceClassifierOutput(logits=student_out.logits)) if return_outputs else loss
