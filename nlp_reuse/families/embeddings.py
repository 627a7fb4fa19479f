"""Initial token vectors for the small students, taken from the teacher.

- `teacher_input_embeddings`: the teacher's input word embeddings, PCA-projected when the student is narrower.
- `encoder_static_embeddings`: Model2Vec-style distillation of the teacher's *encoder* into one static vector per
  token: every token alone (`[CLS] token [SEP]`) through the encoder, its contextual output vector, then PCA. The
  `model2vec` library does this too, but its `distill` extra pins transformers<5.4 and nlp_reuse runs on 5.x, so the
  procedure is written here (vectors from the fine-tuned teacher's encoder, no Zipf re-weighting: the student's
  training adapts the vectors to the task).
"""

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from nlp_reuse.errors import ModelError, format_error


def pca_project(matrix: torch.Tensor, dim: int) -> torch.Tensor:
    """(rows, d) -> (rows, dim): the centred rows on their top `dim` principal directions (deterministic: SVD)."""
    if dim > matrix.shape[1]:
        raise ModelError(format_error(
            "The student's embeddings cannot be wider than the teacher's vectors they are projected from.",
            f"--student_embedding_dim <= {matrix.shape[1]}", str(dim),
            f"pass --student_embedding_dim {matrix.shape[1]} or less, or --student_embedding_init random"))
    if dim == matrix.shape[1]:
        return matrix.clone()
    centred = matrix.float() - matrix.float().mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)  # vh: (d, d), rows by decreasing variance
    return centred @ vh[:dim].T  # (rows, dim)


def teacher_input_embeddings(teacher: PreTrainedModel, dim: int) -> torch.Tensor:
    """(vocab, dim) from the teacher's input word embeddings."""
    return pca_project(teacher.get_input_embeddings().weight.detach().float().cpu(), dim)


@torch.no_grad()
def encoder_static_embeddings(teacher: PreTrainedModel, tokenizer, dim: int, batch_size: int = 512) -> torch.Tensor:
    """(vocab, dim): each token's output vector when it is the only token between [CLS] and [SEP]."""
    encoder = teacher.base_model.eval()
    vocab = teacher.get_input_embeddings().weight.shape[0]
    cls = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    if cls is None or sep is None:
        raise ModelError(format_error(
            "--student_embedding_init encoder wraps each token in the tokenizer's start and end tokens.",
            "a tokenizer with [CLS]/[SEP] (or <s>/</s>)", f"cls {cls}, sep {sep}",
            "use --student_embedding_init teacher"))
    device = next(encoder.parameters()).device
    vectors = []
    for start in tqdm(range(0, vocab, batch_size), desc="Static vectors from the teacher's encoder", leave=False):
        ids = torch.arange(start, min(start + batch_size, vocab), device=device)
        batch = torch.stack([torch.full_like(ids, cls), ids, torch.full_like(ids, sep)], dim=1)  # (batch, 3)
        hidden = encoder(input_ids=batch, attention_mask=torch.ones_like(batch)).last_hidden_state  # (batch, 3, h)
        vectors.append(hidden[:, 1].float().cpu())
    return pca_project(torch.cat(vectors), dim)
