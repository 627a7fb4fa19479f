"""Vocabulary trimming: cut a model's input embeddings and its WordPiece tokenizer down to the tokens a task uses.

A student distilled from a BERT teacher carries the teacher's 30,522-row embedding matrix, although a task's texts
use a few thousand of those tokens; for a small student the embeddings are most of its size.
`trim_vocabulary(model, tokenizer, texts)` keeps every token id that tokenizing `texts` produces, plus the special and
added tokens, in their original order, and returns the model with only those embedding rows and a tokenizer with only
those tokens. Both save with `save_pretrained` and reload as a normal model folder.

Only WordPiece (the BERT family) is supported. WordPiece splits a word by greedy longest match against the
vocabulary; every piece it chose for a word of `texts` is kept, and every longer candidate was already absent from the
old vocabulary, so such a word gets the same pieces as before. A word outside `texts` may lose a piece and become the
unknown token. BPE merges and Unigram scores have no such guarantee, so they are refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import nn
from transformers import PreTrainedModel, TokenizersBackend

from nlp_reuse.errors import DataError, ModelError, format_error

# Texts tokenized per call: bounds the memory of the id lists for large corpora.
_CHUNK = 10_000
# init_kwargs that describe the old vocabulary (its files, ids and origin) and must not reach the trimmed tokenizer.
_STALE_INIT_KWARGS = frozenset({
    "vocab", "merges", "vocab_file", "merges_file", "tokenizer_file", "tokenizer_object", "added_tokens_decoder",
    "name_or_path", "is_local", "local_files_only",
})


@dataclass
class VocabularyTrim:
    """The vocabulary size (embedding rows) before and after trimming, for reports."""

    before: int
    after: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VocabularyTrim:
        return cls(before=int(d["before"]), after=int(d["after"]))


def _used_ids(tokenizer: TokenizersBackend, texts: list[str], text_pairs: list[str] | None) -> set[int]:
    used: set[int] = set()
    for start in range(0, len(texts), _CHUNK):
        pairs = None if text_pairs is None else text_pairs[start:start + _CHUNK]
        # No truncation: a token past max_length is still a token of the task.
        encoded = tokenizer(texts[start:start + _CHUNK], pairs, truncation=False, verbose=False)
        for ids in encoded["input_ids"]:
            used.update(ids)
    return used


def _post_processor_ids(node: dict[str, Any] | None) -> Iterable[int]:
    """Every token id a post-processor inserts (TemplateProcessing, BertProcessing, RobertaProcessing, Sequence)."""
    if node is None:
        return
    kind = node["type"]
    if kind == "Sequence":
        for child in node["processors"]:
            yield from _post_processor_ids(child)
    elif kind == "TemplateProcessing":
        for special in node["special_tokens"].values():
            yield from special["ids"]
    elif kind in ("BertProcessing", "RobertaProcessing"):
        yield node["cls"][1]
        yield node["sep"][1]


def _remap_post_processor(node: dict[str, Any] | None, new_id: dict[int, int]) -> None:
    """Rewrite, in place, the token ids a post-processor inserts to their ids in the trimmed vocabulary."""
    if node is None:
        return
    kind = node["type"]
    if kind == "Sequence":
        for child in node["processors"]:
            _remap_post_processor(child, new_id)
    elif kind == "TemplateProcessing":
        for special in node["special_tokens"].values():
            special["ids"] = [new_id[i] for i in special["ids"]]
    elif kind in ("BertProcessing", "RobertaProcessing"):
        node["cls"][1] = new_id[node["cls"][1]]
        node["sep"][1] = new_id[node["sep"][1]]


def _check_wordpiece(tokenizer: Any, state: dict[str, Any] | None) -> None:
    kind = None if state is None else state["model"]["type"]
    if kind != "WordPiece":
        found = f"a {type(tokenizer).__name__}" + (f" with a {kind} model" if kind else " without a tokenizers backend")
        raise ModelError(format_error(
            "Vocabulary trimming supports WordPiece tokenizers only.",
            "a fast WordPiece tokenizer (the BERT family: BERT, DistilBERT, MiniLM, ELECTRA), whose greedy longest "
            "match gives a word the same pieces once the vocabulary is cut to the pieces the texts use",
            f"{found}; BPE merges and Unigram scores can split a word differently once tokens are removed",
            "train without vocabulary trimming, or distill from a WordPiece (BERT-family) teacher",
        ))


def _trim_tokenizer(tokenizer: TokenizersBackend, state: dict[str, Any], kept: list[int]) -> TokenizersBackend:
    new_id = {old: new for new, old in enumerate(kept)}
    state["model"]["vocab"] = {tok: new_id[i] for tok, i in state["model"]["vocab"].items() if i in new_id}
    for added in state["added_tokens"]:
        added["id"] = new_id[added["id"]]
    _remap_post_processor(state["post_processor"], new_id)
    if state["padding"] is not None:
        state["padding"]["pad_id"] = new_id[state["padding"]["pad_id"]]
    backend = Tokenizer.from_str(json.dumps(state))

    kwargs = {k: v for k, v in tokenizer.init_kwargs.items() if k not in _STALE_INIT_KWARGS}
    # Attributes a caller may have changed after loading win over the values the tokenizer was built with.
    kwargs.update(tokenizer.special_tokens_map)
    if tokenizer.extra_special_tokens:
        kwargs["extra_special_tokens"] = tokenizer.extra_special_tokens
    kwargs.update(model_max_length=tokenizer.model_max_length, padding_side=tokenizer.padding_side,
                  truncation_side=tokenizer.truncation_side)
    # The old tokenizer's class, named in the saved tokenizer_config. On reload, transformers 5 gives a class with
    # its own __init__ (BertTokenizer) only the vocabulary and post-processor of tokenizer.json and rebuilds the
    # rest from these kwargs, which is also what this call does: in memory and reloaded, the same tokenizer.
    return type(tokenizer)(tokenizer_object=backend, **kwargs)


def _trim_embeddings(model: PreTrainedModel, kept: list[int]) -> None:
    old = model.get_input_embeddings()
    if type(old) is not nn.Embedding:
        raise ModelError(format_error(
            "Vocabulary trimming cannot rebuild this model's input embeddings.",
            "model.get_input_embeddings() returning a plain torch.nn.Embedding",
            f"{type(old).__name__} in {type(model).__name__}",
            "trim a model whose token embeddings are an nn.Embedding (the BERT family), or train without trimming",
        ))
    if model.get_output_embeddings() is not None:
        raise ModelError(format_error(
            "Vocabulary trimming does not support models with an output layer over the vocabulary.",
            "a classifier (e.g. BertForSequenceClassification) whose outputs do not depend on the vocabulary",
            f"{type(model).__name__}, whose output embeddings score every vocabulary token",
            "trim the sequence-classification model, not a language-model head",
        ))
    new_id = {old_id: new for new, old_id in enumerate(kept)}
    padding_idx = None if old.padding_idx is None else new_id.get(old.padding_idx)
    new = nn.Embedding(len(kept), old.embedding_dim, padding_idx=padding_idx, max_norm=old.max_norm,
                       norm_type=old.norm_type, scale_grad_by_freq=old.scale_grad_by_freq, sparse=old.sparse,
                       device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(old.weight[torch.tensor(kept, device=old.weight.device)])
    new.weight.requires_grad_(old.weight.requires_grad)
    model.set_input_embeddings(new)
    model.config.vocab_size = len(kept)
    if model.config.pad_token_id is not None:
        model.config.pad_token_id = new_id[model.config.pad_token_id]


def trim_vocabulary(model: PreTrainedModel, tokenizer: TokenizersBackend, texts: list[str],
                    text_pairs: list[str] | None = None) -> tuple[PreTrainedModel, TokenizersBackend, VocabularyTrim]:
    """Cut `model`'s input embeddings and `tokenizer`'s WordPiece vocabulary to the tokens `texts` (and
    `text_pairs`) use, plus every special and added token, in their original order.

    The model is changed in place (like `resize_token_embeddings`) and returned; its outputs are unchanged on any
    input the old tokenizer splits into kept tokens. The tokenizer is a new one of the same class, with the same
    normalizer, pre-tokenizer, decoder, special tokens, model_max_length and padding side, and a post-processor that
    inserts the special tokens' new ids. Words outside `texts` may tokenize to the unknown token.
    """
    state = json.loads(tokenizer.backend_tokenizer.to_str()) if isinstance(tokenizer, TokenizersBackend) else None
    _check_wordpiece(tokenizer, state)
    if not texts:
        raise DataError(format_error(
            "Vocabulary trimming needs the task's texts.", "at least one text (the training texts)", "no texts",
            "pass the texts the model will see, e.g. the training set's text column",
        ))
    if text_pairs is not None and len(text_pairs) != len(texts):
        raise DataError(format_error(
            "Vocabulary trimming got texts and text pairs of different lengths.", "one text pair per text",
            f"{len(texts)} texts and {len(text_pairs)} text pairs", "pass the two columns of the same rows",
        ))
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise ModelError(format_error(
            "The tokenizer and the model do not fit together.",
            f"at most {rows} tokens (the model's embedding rows)", f"{len(tokenizer)} tokens in the tokenizer",
            "pass the tokenizer saved with this model",
        ))
    kept_ids = _used_ids(tokenizer, texts, text_pairs)
    kept_ids.update(tokenizer.added_tokens_decoder)  # special tokens are added tokens in the backend
    kept_ids.update(tokenizer.all_special_ids)
    kept_ids.update(_post_processor_ids(state["post_processor"]))
    if state["padding"] is not None:
        kept_ids.add(state["padding"]["pad_id"])
    if model.config.pad_token_id is not None:
        kept_ids.add(model.config.pad_token_id)
    kept = sorted(kept_ids)

    trimmed_tokenizer = _trim_tokenizer(tokenizer, state, kept)
    _trim_embeddings(model, kept)
    return model, trimmed_tokenizer, VocabularyTrim(before=rows, after=len(kept))
