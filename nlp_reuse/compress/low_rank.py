"""Low-rank factorization: replace Linear layers by two thin Linear layers from a truncated SVD.

W (out x in) ~= U_k S_k V_k^T is stored as `first = Linear(in, k, bias=False)` with weight S_k^1/2 V_k^T and
`second = Linear(k, out)` with weight U_k S_k^1/2 and the original bias; the relative Frobenius error of the
truncation is sqrt(sum_{i>k} s_i^2 / sum_i s_i^2).

A factorized model does not fit the architecture in config.json, so a plain `AutoModel.from_pretrained` cannot
rebuild it. It is saved with its ranks in `low_rank.json` and its weights in `low_rank_model.safetensors` (a name
`from_pretrained` does not look for, so it fails loudly instead of loading random dense weights);
`load_low_rank_model` rebuilds it. The deployable artefact is the ONNX export, whose graph holds the thin layers.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from nlp_reuse.errors import ModelError, format_error
from nlp_reuse.files import LOW_RANK_INFO_NAME, LOW_RANK_WEIGHTS_NAME

logger = logging.getLogger(__name__)


class LowRankLinear(nn.Module):
    """y = second(first(x)): a rank-`rank` stand-in for an `in_features -> out_features` Linear."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.first = nn.Linear(in_features, rank, bias=False)
        self.second = nn.Linear(rank, out_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(self.first(x))

    def weight_product(self) -> torch.Tensor:
        """The (out_features, in_features) matrix this module applies."""
        return self.second.weight @ self.first.weight

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


@dataclass
class LowRankLayerReport:
    """One Linear layer's factorization (or why it was left dense)."""

    name: str
    in_features: int
    out_features: int
    rank: int  # chosen rank; min(in_features, out_features) when the layer stays dense
    params_before: int  # weight + bias
    params_after: int
    relative_error: float  # ||W - W_k||_F / ||W||_F
    energy_kept: float  # sum_{i<=k} s_i^2 / sum_i s_i^2
    replaced: bool  # False when the rank gives no parameter saving

    def to_dict(self) -> dict:
        return asdict(self)


def break_even_rank(in_features: int, out_features: int) -> int:
    """Largest rank whose two thin layers hold fewer weights than the dense layer: k (in + out) < in * out."""
    return (in_features * out_features - 1) // (in_features + out_features)


def choose_rank(singular_values: torch.Tensor, in_features: int, out_features: int, *, ratio: float | None = None,
                energy: float | None = None) -> int:
    """Rank from either `ratio` (fraction of the layer's weight parameters kept: k = ratio*in*out/(in+out)) or
    `energy` (smallest k whose squared singular values keep that fraction of ||W||_F^2)."""
    if (ratio is None) == (energy is None):
        raise ModelError(format_error("Low-rank needs exactly one rank rule.", "low_rank_ratio or low_rank_energy",
                                      f"ratio={ratio}, energy={energy}", "pass only one of the two"))
    if ratio is not None:
        if not 0.0 < ratio < 1.0:
            raise ModelError(format_error("low_rank_ratio out of range.", "0 < ratio < 1 (fraction of weights kept)",
                                          repr(ratio), "pass e.g. --low_rank_ratio 0.5"))
        return max(1, int(ratio * in_features * out_features / (in_features + out_features)))
    if not 0.0 < energy <= 1.0:
        raise ModelError(format_error("low_rank_energy out of range.", "0 < energy <= 1", repr(energy),
                                      "pass e.g. --low_rank_energy 0.9"))
    cumulative = torch.cumsum(singular_values.double() ** 2, 0) / (singular_values.double() ** 2).sum()
    # Small tolerance so energy=1.0 is reachable despite rounding in the cumulative sum.
    return int(torch.searchsorted(cumulative, torch.tensor(energy - 1e-9, dtype=torch.float64)).item()) + 1


def factorize_linear(linear: nn.Linear, name: str, *, ratio: float | None = None, energy: float | None = None
                     ) -> tuple[nn.Module, LowRankLayerReport]:
    """Truncated-SVD factorization of one Linear; returns (replacement, report). The replacement is the
    original layer when the chosen rank saves no parameters."""
    weight = linear.weight.detach().float()  # (out, in)
    u, s, vh = torch.linalg.svd(weight, full_matrices=False)  # (out, r), (r,), (r, in)
    rank = min(choose_rank(s, linear.in_features, linear.out_features, ratio=ratio, energy=energy), s.numel())
    has_bias = linear.bias is not None
    params_before = weight.numel() + (linear.out_features if has_bias else 0)
    energy_kept = float((s[:rank] ** 2).sum() / (s ** 2).sum())
    if rank > break_even_rank(linear.in_features, linear.out_features):
        full = min(linear.in_features, linear.out_features)
        report = LowRankLayerReport(name, linear.in_features, linear.out_features, full, params_before,
                                    params_before, 0.0, 1.0, replaced=False)
        return linear, report
    root = s[:rank].sqrt()
    module = LowRankLinear(linear.in_features, linear.out_features, rank, bias=has_bias)
    with torch.no_grad():
        module.first.weight.copy_(root[:, None] * vh[:rank])  # (rank, in)
        module.second.weight.copy_(u[:, :rank] * root[None, :])  # (out, rank)
        if has_bias:
            module.second.bias.copy_(linear.bias.detach())
    module.to(dtype=linear.weight.dtype, device=linear.weight.device)
    with torch.no_grad():
        error = float(torch.linalg.norm(weight - module.weight_product().float()) / torch.linalg.norm(weight))
    params_after = sum(p.numel() for p in module.parameters())
    return module, LowRankLayerReport(name, linear.in_features, linear.out_features, rank, params_before,
                                      params_after, error, energy_kept, replaced=True)


def _target_linears(model: nn.Module, target_modules: list[str] | None) -> list[str]:
    """Module names to factorize: every encoder Linear by default, else those whose name ends with a target."""
    prefix = f"{model.base_model_prefix}.encoder."
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and n.startswith(prefix)]
    if target_modules is None:
        return names
    chosen = [n for n in names if any(n == t or n.endswith("." + t) for t in target_modules)]
    if not chosen:
        examples = sorted({n.split(".", 4)[-1] for n in names})[:8]
        raise ModelError(format_error("No Linear layer matches the low-rank targets.",
                                      f"module-name suffixes such as {examples}", f"targets={target_modules}",
                                      "pass --low_rank_targets with suffixes of encoder Linear names"))
    return chosen


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child, module)


def apply_low_rank(model: nn.Module, *, ratio: float | None = None, energy: float | None = None,
                   target_modules: list[str] | None = None) -> list[LowRankLayerReport]:
    """Factorize the target Linear layers of `model` in place; returns one report per considered layer.

    Targets default to every Linear of the transformer encoder (attention projections and feed-forward);
    the pooler and classifier stay dense.
    """
    reports = []
    for name in _target_linears(model, target_modules):
        replacement, report = factorize_linear(model.get_submodule(name), name, ratio=ratio, energy=energy)
        if report.replaced:
            _set_module(model, name, replacement)
        reports.append(report)
    replaced = [r for r in reports if r.replaced]
    if not replaced:
        logger.warning("Low-rank: no layer was factorized (the chosen ranks would not save parameters).")
    return reports


def low_rank_layout(model: nn.Module) -> dict[str, dict]:
    """{module name: {in_features, out_features, rank, bias}} for every LowRankLinear in `model`."""
    return {name: {"in_features": m.in_features, "out_features": m.out_features, "rank": m.rank,
                   "bias": m.second.bias is not None}
            for name, m in model.named_modules() if isinstance(m, LowRankLinear)}


def save_low_rank_model(model: nn.Module, tokenizer, folder: str | Path, extra: dict | None = None) -> Path:
    """Write config.json, tokenizer, low_rank.json (layer ranks) and low_rank_model.safetensors to `folder`."""
    from safetensors.torch import save_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / LOW_RANK_INFO_NAME).write_text(json.dumps({"layers": low_rank_layout(model), **(extra or {})},
                                                        indent=2) + "\n")
    save_model(model, str(folder / LOW_RANK_WEIGHTS_NAME))
    return folder


def load_low_rank_model(folder: str | Path) -> nn.Module:
    """Rebuild a model saved by `save_low_rank_model`: architecture from config.json, thin layers from
    low_rank.json, weights loaded strictly."""
    from safetensors.torch import load_model
    from transformers import AutoConfig, AutoModelForSequenceClassification

    folder = Path(folder)
    weights = folder / LOW_RANK_WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(format_error(f"{folder} is missing its low-rank weights.", LOW_RANK_WEIGHTS_NAME,
                                             "low_rank.json without weights",
                                             "re-run scripts/export.py --low_rank_ratio ... --overwrite"))
    layout = json.loads((folder / LOW_RANK_INFO_NAME).read_text())["layers"]
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    from nlp_reuse.compress.prune import apply_pruned_heads

    model = apply_pruned_heads(AutoModelForSequenceClassification.from_config(config))
    for name, spec in layout.items():
        _set_module(model, name, LowRankLinear(spec["in_features"], spec["out_features"], spec["rank"],
                                               bias=spec["bias"]))
    load_model(model, str(weights), strict=True)
    return model.eval()


__all__ = [
    "LowRankLayerReport",
    "LowRankLinear",
    "apply_low_rank",
    "break_even_rank",
    "choose_rank",
    "factorize_linear",
    "load_low_rank_model",
    "low_rank_layout",
    "save_low_rank_model",
]
