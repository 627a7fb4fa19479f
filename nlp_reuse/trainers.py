"""`DistillationTrainer`: a `transformers.Trainer` whose loss learns from a frozen teacher.

Only `__init__`, `compute_loss` and `create_optimizer` (to train the layer projections with the student) are
overridden, so checkpointing, logging, mixed precision, gradient accumulation and DDP/FSDP come from `Trainer`.
"""

import torch
from transformers import PreTrainedModel, Trainer
from transformers.modeling_outputs import SequenceClassifierOutput

from .config import DistillationArguments
from .layer_map import LayerProjector, parse_layer_map
from .losses import attention_kl_loss, get_hidden_loss, kd_loss
from .modeling import num_layers


class DistillationTrainer(Trainer):
    """Trains `model` (the student) on `alpha * T^2 * KL + (1 - alpha) * CE` plus optional hidden/attention terms.

    Losses are computed per example, summed, and divided by the number of labelled examples in the whole optimizer
    step (all accumulation micro-batches, all processes), so gradient accumulation and data parallelism give the
    same update as one large batch.
    """

    args: DistillationArguments

    def __init__(self, model: PreTrainedModel, teacher_model: PreTrainedModel, args: DistillationArguments,
                 **kwargs):
        super().__init__(model=model, args=args, **kwargs)
        teacher_model.requires_grad_(False)
        # evaluation_mode: placed on the device (and under mixed-precision autocast) but never wrapped in DDP.
        self.teacher = self.accelerator.prepare_model(teacher_model.eval(), evaluation_mode=True)
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
                # Its own DDP wrapper keeps the projections in sync across processes.
                self.projector = self.accelerator.prepare_model(projector)
        # We normalise by num_items_in_batch ourselves; this makes Trainer count it and not rescale the loss.
        self.model_accepts_loss_kwargs = True

    def create_optimizer(self):
        optimizer = super().create_optimizer()
        if self.projector is not None and not any(
            p is q for group in optimizer.param_groups for p in group["params"] for q in self.projector.parameters()
        ):
            optimizer.add_param_group({"params": list(self.projector.parameters()), "weight_decay": 0.0})
        return optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.get("labels")
        features = {k: v for k, v in inputs.items() if k != "labels"}
        want_hidden, want_attn = self.use_hidden, self.use_attention
        student_out = model(**features, output_hidden_states=want_hidden, output_attentions=want_attn)
        with torch.no_grad():
            teacher_out = self.teacher(**features, output_hidden_states=want_hidden, output_attentions=want_attn)

        per_example = kd_loss(student_out.logits, teacher_out.logits, labels, self.args.temperature, self.args.alpha)
        mask = features.get("attention_mask")
        if want_hidden:
            student_h = [student_out.hidden_states[s] for s, _ in self.layer_pairs]
            if self.projector is not None:
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
