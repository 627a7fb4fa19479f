"""Which student hidden state learns from which teacher hidden state, and the projections between them.

Indices are those of `output_hidden_states`: 0 is the embedding output, i is the output of layer i.
"""

import torch
from torch import nn

from nlp_reuse.errors import LayerMapError


def uniform_layer_map(num_student_layers: int, num_teacher_layers: int,
                      include_embeddings: bool = False) -> list[tuple[int, int]]:
    """Student layer i learns from teacher layer round(i * L_t / L_s) (TinyBERT's uniform strategy)."""
    pairs = [(i, int(round(i * num_teacher_layers / num_student_layers))) for i in range(1, num_student_layers + 1)]
    return [(0, 0)] + pairs if include_embeddings else pairs


def parse_layer_map(spec: str, num_student_layers: int, num_teacher_layers: int,
                    include_embeddings: bool = False) -> list[tuple[int, int]]:
    """`uniform` or explicit `s:t` pairs separated by commas, checked against both models' depths."""
    if spec == "uniform":
        return uniform_layer_map(num_student_layers, num_teacher_layers, include_embeddings)
    pairs = []
    for item in spec.split(","):
        left, sep, right = item.strip().partition(":")
        if not sep or not left.strip().isdigit() or not right.strip().isdigit():
            raise LayerMapError(
                f"--layer_map item {item.strip()!r} is not of the form STUDENT:TEACHER (e.g. '1:2,2:4,3:6') "
                "and the map is not 'uniform'."
            )
        s, t = int(left), int(right)
        if s > num_student_layers or t > num_teacher_layers:
            raise LayerMapError(
                f"--layer_map pair {s}:{t} is out of range: the student has hidden states 0..{num_student_layers} "
                f"and the teacher 0..{num_teacher_layers} (0 is the embedding output)."
            )
        pairs.append((s, t))
    if len({s for s, _ in pairs}) != len(pairs):
        raise LayerMapError(f"--layer_map {spec!r} maps one student layer twice; each may appear once.")
    return pairs


class LayerProjector(nn.Module):
    """Learned linear maps from the student's hidden size to the teacher's, one per mapped layer.

    It lives beside the student (in the trainer), never inside it, so the student's checkpoint and export stay
    clean. With equal hidden sizes it has no parameters and returns its inputs.
    """

    def __init__(self, num_pairs: int, student_hidden: int, teacher_hidden: int):
        super().__init__()
        self.proj = nn.ModuleList(
            nn.Linear(student_hidden, teacher_hidden) for _ in range(num_pairs)
        ) if student_hidden != teacher_hidden else None

    def forward(self, hidden_states: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.proj is None:
            return list(hidden_states)
        return [p(h) for p, h in zip(self.proj, hidden_states)]  # each (batch, seq, teacher_hidden)
