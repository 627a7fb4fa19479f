"""A BiLSTM text classifier after Tang et al. (2019), "Distilling Task-Specific Knowledge from BERT into Simple
Neural Networks": token embeddings, one bidirectional LSTM layer, pooling over the real tokens, a small MLP.

The backward direction is a second LSTM run over each sequence reversed within its own length (an index gather), so
right-padding is never read before the real tokens: a text's logits are the same alone or in a padded batch, and
the graph exports to ONNX (two LSTM nodes and gathers, no packed sequences).

Under `torch.onnx.export` each LSTM is emitted as one ONNX `LSTM` node (`torch.onnx.ops.symbolic`): torch.export
decomposes `nn.LSTM` into a loop over the time steps, which fixes the sequence length of the graph.
"""

import torch
from torch import nn

from nlp_reuse.families.common import SmallStudentConfig, SmallStudentModel, attention_mask_or_ones


class BiLSTMConfig(SmallStudentConfig):
    model_type = "nlp_reuse_bilstm"

    def __init__(self, embedding_dim: int = 300, hidden_size: int = 300, num_hidden_layers: int = 1,
                 pooling: str = "max", **kwargs):
        self.hidden_size = hidden_size  # LSTM units per direction
        super().__init__(embedding_dim=embedding_dim, pooling=pooling, num_hidden_layers=num_hidden_layers, **kwargs)


def reverse_within_length(mask: torch.Tensor) -> torch.Tensor:
    """(batch, seq) index that reverses each row's first `length` positions and leaves the padding in place; applying
    it twice is the identity."""
    lengths = mask.sum(1, keepdim=True)  # (batch, 1)
    positions = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0)  # (1, seq)
    return torch.where(positions < lengths, lengths - 1 - positions, positions)


def _onnx_gates(weight: torch.Tensor) -> torch.Tensor:
    """PyTorch stacks the LSTM gates as (input, forget, cell, output), ONNX as (input, output, forget, cell)."""
    h = weight.shape[0] // 4  # slices, not chunk(): the exporter folds them into constants (it keeps a Split)
    return torch.cat([weight[:h], weight[3 * h:], weight[h:2 * h], weight[2 * h:3 * h]], dim=0)


def lstm_states(lstm: nn.LSTM, x: torch.Tensor) -> torch.Tensor:
    """(batch, seq, input) -> (batch, seq, hidden): the top layer's states of a batch-first, one-way `lstm`."""
    if not torch.onnx.is_in_onnx_export():
        return lstm(x)[0]
    x = x.transpose(0, 1)  # (seq, batch, input): onnxruntime runs the time-major layout only
    for layer in range(lstm.num_layers):
        weights = [getattr(lstm, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        w, r = (_onnx_gates(m).unsqueeze(0) for m in weights[:2])  # (1, 4 hidden, input | hidden)
        b = torch.cat([_onnx_gates(weights[2]), _onnx_gates(weights[3])]).unsqueeze(0)  # (1, 8 hidden)
        y = torch.onnx.ops.symbolic(  # Y: (seq, directions, batch, hidden)
            "::LSTM", (x, w, r, b), {"hidden_size": lstm.hidden_size}, dtype=x.dtype,
            shape=(x.shape[0], 1, x.shape[1], lstm.hidden_size))
        x = y.squeeze(1)
    return x.transpose(0, 1)


def _gather_steps(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))  # (batch, seq, dim)


class BiLSTMForSequenceClassification(SmallStudentModel):
    config_class = BiLSTMConfig
    base_model_prefix = "bilstm"

    def __init__(self, config: BiLSTMConfig):
        super().__init__(config, pooled_features=2 * config.hidden_size)
        layers = config.num_hidden_layers
        self.forward_lstm = nn.LSTM(config.embedding_dim, config.hidden_size, num_layers=layers, batch_first=True)
        self.backward_lstm = nn.LSTM(config.embedding_dim, config.hidden_size, num_layers=layers, batch_first=True)
        self.dropout = nn.Dropout(config.dropout)
        self.post_init()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, labels: torch.Tensor | None = None, **kwargs):
        mask = attention_mask_or_ones(input_ids, attention_mask)
        x = self.dropout(self.embeddings(input_ids))  # (batch, seq, embedding_dim)
        reverse = reverse_within_length(mask)
        forward_states = lstm_states(self.forward_lstm, x)  # (batch, seq, hidden)
        backward_states = lstm_states(self.backward_lstm, _gather_steps(x, reverse))
        states = torch.cat([forward_states, _gather_steps(backward_states, reverse)], dim=-1)  # (batch, seq, 2 hidden)
        return self.classify(states, mask, labels)
