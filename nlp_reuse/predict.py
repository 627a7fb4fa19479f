"""Batched inference: the one function that turns texts or a tokenized dataset into a model's logits.

Evaluation, latency measurement, the benchmark's PyTorch predictor, the teacher-logit cache and the features
strategy all call `predict_logits`, so eval mode, no autograd, batching, padding and input order are the same
everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from datasets import Dataset
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

# The tokenizer outputs a BERT-family classifier takes; other dataset columns (label, text, cached logits) are dropped.
MODEL_INPUTS = ("input_ids", "token_type_ids", "attention_mask")


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """`model` in eval mode inside the block; afterwards every submodule has its own train/eval flag back.

    A model whose top module is already in eval mode is used as it is: walking BERT's modules costs 0.1-1 ms, which
    a batch-1 latency measurement would otherwise count on every call (wrap the whole timing loop instead).
    """
    if not model.training:
        yield model
        return
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:  # per module: a frozen teacher inside a training model stays in eval
            module.training = training


def predict_logits(model: nn.Module, inputs: Sequence[str] | Dataset, *, tokenizer=None, collator=None,
                   batch_size: int = 32, device: torch.device | str | None = None, max_length: int = 128,
                   autocast_dtype: torch.dtype | None = None,
                   output: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None,
                   desc: str | None = None) -> np.ndarray:
    """(len(inputs), num_labels) float32 logits, in input order, computed in eval mode without autograd.

    `inputs` is either texts, tokenized here by `tokenizer` per batch (padded to the longest text of the batch,
    truncated at `max_length`), or a tokenized `datasets.Dataset` whose model-input columns `collator` batches.
    The model is moved to `device` first (None: it runs where its parameters are). `autocast_dtype` computes under
    `torch.autocast` in that dtype (a bf16/fp16 teacher); the result is float32 either way. `output` maps a batch
    to what is kept instead of `model(**batch).logits` (e.g. pooled embeddings); `desc` shows a progress bar.
    """
    if len(inputs) == 0:
        raise ValueError("predict_logits needs at least one input.")
    batches = _input_batches(inputs, tokenizer, collator, batch_size, max_length)
    if device is not None:
        model.to(device)  # outside inference_mode: parameters moved inside it could never train again
    device = next(model.parameters()).device
    output = output or (lambda batch: model(**batch).logits)
    # Disabled unless asked for, also inside a caller's autocast: the logits never depend on where this is called.
    autocast = torch.autocast(device_type=device.type, dtype=autocast_dtype or torch.float32,
                              enabled=autocast_dtype is not None)
    chunks = []
    with eval_mode(model), torch.inference_mode(), autocast:
        for batch in tqdm(batches, desc=desc, total=-(-len(inputs) // batch_size), unit="batch") if desc else batches:
            batch = {name: tensor.to(device) for name, tensor in batch.items()}
            chunks.append(output(batch).float().cpu().numpy())  # (batch, num_labels)
    return np.concatenate(chunks)


def _input_batches(inputs: Sequence[str] | Dataset, tokenizer, collator, batch_size: int,
                   max_length: int) -> Iterator[dict[str, torch.Tensor]]:
    if isinstance(inputs, Dataset):
        if collator is None:
            raise TypeError("predict_logits on a tokenized dataset needs collator= (e.g. DataCollatorWithPadding).")
        columns = [name for name in MODEL_INPUTS if name in inputs.column_names]
        return iter(DataLoader(inputs.select_columns(columns), batch_size=batch_size, collate_fn=collator))
    if tokenizer is None or isinstance(inputs, str):
        raise TypeError("predict_logits on texts needs a list of strings and tokenizer=.")
    return (tokenizer(list(inputs[start:start + batch_size]), padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt") for start in range(0, len(inputs), batch_size))


__all__ = ["MODEL_INPUTS", "eval_mode", "predict_logits"]
