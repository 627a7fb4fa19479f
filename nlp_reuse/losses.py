"""Distillation losses as pure functions of tensors.

Every function returns one value per example (shape `(batch,)`) so the caller decides how to normalise: the
trainer sums them and divides by the number of examples in the whole (accumulated, multi-process) batch, which keeps
gradient accumulation and data parallelism exact. Examples whose label is -100 contribute zero. Transfer examples
(augmented or unlabeled texts) carry the label `TRANSFER_LABEL` (-1): they count as examples and learn from the
teacher's soft targets, but have no gold label for the cross-entropy term.
"""

import torch
import torch.nn.functional as F

TRANSFER_LABEL = -1  # an example labelled only by the teacher's logits (Trainer counts every label != -100)


def _example_mask(labels: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
    if labels is None:
        return torch.ones(batch, device=device)
    return (labels != -100).float()


def kd_kl_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Soft-target loss of Hinton et al. (2015), "Distilling the Knowledge in a Neural Network".

    `T^2 * KL(softmax(t / T) || softmax(s / T))` per example. The T^2 factor keeps the gradient scale of the soft
    term independent of T, so `alpha` means the same thing at every temperature.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    log_p_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)  # (batch,)
    return temperature**2 * kl * _example_mask(labels, kl.shape[0], kl.device)


def logit_mse_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared error between raw logits, `mean_k (s_k - t_k)^2` per example (Tang et al. 2019, "Distilling
    Task-Specific Knowledge from BERT into Simple Neural Networks"; Ba & Caruana 2014).

    Logits keep the teacher's relative confidences that a softmax flattens; the temperature does not apply (the
    argument only keeps the signature of `kd_kl_loss`).
    """
    per_example = (student_logits.float() - teacher_logits.float()).pow(2).mean(-1)  # (batch,)
    return per_example * _example_mask(labels, per_example.shape[0], per_example.device)


def hard_ce_loss(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with the gold labels per example; -100 and TRANSFER_LABEL examples give 0."""
    gold = labels >= 0
    ce = F.cross_entropy(student_logits.float(), labels.clamp_min(0), reduction="none")  # (batch,)
    return ce * gold.float()


# Soft-target loss name -> per-example function(student_logits, teacher_logits, temperature, labels).
KD_LOSSES = {"kl": kd_kl_loss, "mse": logit_mse_loss}


def get_kd_loss(name: str):
    """The soft-target loss function called `name`; an unknown name lists the valid ones."""
    if name not in KD_LOSSES:
        raise ValueError(f"Unknown kd_loss {name!r}: expected one of {sorted(KD_LOSSES)}.")
    return KD_LOSSES[name]


def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor | None,
    temperature: float = 2.0, alpha: float = 0.5, soft_loss: str = "kl",
) -> torch.Tensor:
    """`alpha * soft + (1 - alpha) * CE(s, y)` per example, soft = `T^2 * KL(p_t^T || p_s^T)` (Hinton et al., 2015)
    or the logit MSE (`soft_loss="mse"`, Tang et al. 2019). Transfer examples (label -1) get the soft term only."""
    soft = get_kd_loss(soft_loss)(student_logits, teacher_logits, temperature, labels)
    if labels is None or alpha == 1.0:
        return alpha * soft
    return alpha * soft + (1.0 - alpha) * hard_ce_loss(student_logits, labels)


def _token_mean(per_token: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the real (unpadded) tokens of each example: (batch, seq) -> (batch,)."""
    if attention_mask is None:
        return per_token.mean(-1)
    mask = attention_mask.to(per_token.dtype)
    return (per_token * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)


def hidden_mse_loss(
    student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared error between hidden states (FitNets, Romero et al. 2015; TinyBERT, Jiao et al. 2020).

    Inputs are (batch, seq, hidden) with equal hidden sizes (project the student first); the squared error is
    averaged over the hidden dimension and over the unpadded tokens of each example.
    """
    per_token = (student_hidden.float() - teacher_hidden.float()).pow(2).mean(-1)  # (batch, seq)
    return _token_mean(per_token, attention_mask)


def hidden_cosine_loss(
    student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """`1 - cos(h_s, h_t)` per token, averaged over unpadded tokens (DistilBERT's cosine embedding loss)."""
    per_token = 1.0 - F.cosine_similarity(student_hidden.float(), teacher_hidden.float(), dim=-1)  # (batch, seq)
    return _token_mean(per_token, attention_mask)


def attention_kl_loss(
    student_attention: torch.Tensor, teacher_attention: torch.Tensor, attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL between teacher and student self-attention distributions (MiniLM, Wang et al. 2020).

    Inputs are (batch, heads, seq, seq) probabilities. When head counts differ, heads are averaged first.
    `KL(A_t || A_s)` is summed over keys and averaged over heads and unpadded query positions.
    """
    if student_attention.shape[1] != teacher_attention.shape[1]:
        student_attention = student_attention.mean(1, keepdim=True)
        teacher_attention = teacher_attention.mean(1, keepdim=True)
    eps = 1e-8
    t = teacher_attention.float()
    kl = (t * ((t + eps).log() - (student_attention.float() + eps).log())).sum(-1)  # (batch, heads, seq)
    return _token_mean(kl.mean(1), attention_mask)


HIDDEN_LOSSES = {"mse": hidden_mse_loss, "cosine": hidden_cosine_loss}


def get_hidden_loss(name: str):
    """The hidden-state loss function called `name`; an unknown name lists the valid ones."""
    if name not in HIDDEN_LOSSES:
        raise ValueError(f"Unknown hidden_loss {name!r}: expected one of {sorted(HIDDEN_LOSSES)}.")
    return HIDDEN_LOSSES[name]


# Domain alignment losses (nlp_reuse.domain). Unlike the losses above they are batch-level: each compares two sets
# of features (the source batch and the target batch) and returns one scalar, not one value per example.


def _check_feature_sets(name: str, source: torch.Tensor, target: torch.Tensor) -> None:
    if source.dim() != 2 or target.dim() != 2 or source.shape[1] != target.shape[1]:
        raise ValueError(f"{name} expects two (n, d) feature matrices of the same width d, got {tuple(source.shape)} "
                         f"and {tuple(target.shape)}.")
    if source.shape[0] < 2 or target.shape[0] < 2:
        raise ValueError(f"{name} needs at least 2 rows in each feature set, got {source.shape[0]} and "
                         f"{target.shape[0]}.")


def _covariance(x: torch.Tensor) -> torch.Tensor:
    centered = x - x.mean(0, keepdim=True)  # (n, d)
    return centered.T @ centered / (x.shape[0] - 1)  # (d, d), unbiased


def coral_loss(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Deep CORAL (Sun & Saenko 2016, "Deep CORAL: Correlation Alignment for Deep Domain Adaptation").

    `||C_s - C_t||_F^2 / (4 d^2)` with `C` the unbiased covariance (divided by n - 1) of an (n, d) feature matrix;
    batch-level: one scalar for the two sets. Each set needs n >= 2 rows; the sizes may differ.
    """
    _check_feature_sets("coral_loss", source, target)
    d = source.shape[1]
    return (_covariance(source.float()) - _covariance(target.float())).pow(2).sum() / (4 * d * d)


# Multipliers of the median pairwise distance that give mmd_loss's default bandwidths.
MMD_BANDWIDTH_MULTIPLIERS = (0.25, 0.5, 1.0, 2.0, 4.0)


def _squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # Explicit differences, not torch.cdist: the square root of cdist has no gradient at distance 0 (x with itself).
    return (a[:, None, :] - b[None, :, :]).pow(2).sum(-1)  # (n_a, n_b)


def mmd_loss(source: torch.Tensor, target: torch.Tensor,
             bandwidths: torch.Tensor | list[float] | tuple[float, ...] | None = None) -> torch.Tensor:
    """Squared maximum mean discrepancy with a multi-kernel (Long et al. 2015, DAN, "Learning Transferable Features
    with Deep Adaptation Networks"; Gretton et al. 2012).

    `k(x, y) = sum_sigma exp(-||x - y||^2 / (2 sigma^2))`, biased (V-statistic) estimator
    `mean K(s, s) + mean K(t, t) - 2 mean K(s, t)` over all pairs, diagonals included; batch-level: one scalar for
    the two (n, d) sets (n >= 2 each). Default bandwidths: the median pairwise distance of the pooled sets times
    MMD_BANDWIDTH_MULTIPLIERS (0.25, 0.5, 1, 2, 4), computed without gradient: a bandwidth that moved with the
    features would let the loss fall by rescaling the features instead of aligning the two sets.
    """
    _check_feature_sets("mmd_loss", source, target)
    source, target = source.float(), target.float()
    if bandwidths is None:
        with torch.no_grad():
            pooled = torch.cat([source, target])  # (n_s + n_t, d)
            squared = _squared_distances(pooled, pooled)
            off_diagonal = squared[~torch.eye(len(pooled), dtype=torch.bool, device=pooled.device)]
            median = off_diagonal.sqrt().median().clamp_min(torch.finfo(torch.float32).eps)
            sigmas = median * torch.tensor(MMD_BANDWIDTH_MULTIPLIERS, device=source.device)
    else:
        sigmas = torch.as_tensor(bandwidths, dtype=torch.float32, device=source.device).detach()
        if sigmas.dim() != 1 or sigmas.numel() == 0 or bool((sigmas <= 0).any()):
            raise ValueError(f"mmd_loss bandwidths must be positive numbers, got {bandwidths}.")
    gammas = 1.0 / (2.0 * sigmas.pow(2))  # (kernels,)

    def kernel_mean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.exp(-_squared_distances(a, b)[..., None] * gammas).sum(-1).mean()  # (n_a, n_b, kernels) summed

    return kernel_mean(source, source) + kernel_mean(target, target) - 2.0 * kernel_mean(source, target)


# Domain alignment loss name -> batch-level function(source_features, target_features). The adversarial (DANN) loss
# needs a trainable domain classifier and lives in nlp_reuse.domain.
DOMAIN_LOSSES = {"coral": coral_loss, "mmd": mmd_loss}


def get_domain_loss(name: str):
    """The domain alignment loss function called `name`; an unknown name lists the valid ones."""
    if name not in DOMAIN_LOSSES:
        raise ValueError(f"Unknown domain_loss {name!r}: expected one of {sorted(DOMAIN_LOSSES)}.")
    return DOMAIN_LOSSES[name]
