"""Shared fixtures: a tokenizer trained here, tiny random BERTs and small labelled files. No network, no Hub."""

import os
import tempfile

# Set before transformers/datasets/huggingface_hub are imported anywhere in the test session.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_UPDATE_DOWNLOAD_COUNTS"] = "0"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="nlp_reuse_hf_home_")
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("WANDB_DISABLED", "true")

import json  # noqa: E402
import random  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

LABELS = ["negative", "neutral", "positive"]
_WORDS = {
    "negative": ["bad", "awful", "boring", "terrible", "worst", "dull"],
    "neutral": ["okay", "fine", "average", "plain", "normal", "usual"],
    "positive": ["good", "great", "superb", "lovely", "best", "brilliant"],
}
_FILLER = ["the", "movie", "was", "really", "quite", "a", "plot", "and", "acting", "story", "film", "it"]


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread; two threads fighting over two shared cores are many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_examples(n: int, seed: int) -> list[dict]:
    """Short synthetic sentences whose label is carried by one sentiment word."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = LABELS[i % len(LABELS)]
        words = rng.sample(_FILLER, 5) + [rng.choice(_WORDS[label])]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    """A WordPiece tokenizer trained on the synthetic corpus, saved as a BERT fast tokenizer."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertTokenizerFast

    corpus = [r["text"] for r in make_examples(300, seed=0)] + ["hello world question answer spam ham"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=200, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    )
    tok.train_from_iterator(corpus, trainer)
    out = tmp_path_factory.mktemp("tokenizer")
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    (out / "vocab.txt").write_text("".join(t + "\n" for t, _ in vocab))
    BertTokenizerFast(vocab=dict(vocab), do_lower_case=True).save_pretrained(out)
    return out


def build_tiny_bert(tokenizer_dir: Path, out: Path, num_layers: int = 4, hidden: int = 32, heads: int = 4,
                    labels: list[str] | None = LABELS, seed: int = 0, **config_kwargs) -> Path:
    """Save a random BertForSequenceClassification (with its tokenizer) to `out`."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    kwargs = {}
    if labels is not None:
        kwargs = {"id2label": dict(enumerate(labels)), "label2id": {name: i for i, name in enumerate(labels)}}
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=num_layers,
        num_attention_heads=heads, intermediate_size=2 * hidden, max_position_embeddings=64, **kwargs, **config_kwargs,
    )
    torch.manual_seed(seed)
    BertForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_teacher_dir(tiny_tokenizer_dir, tmp_path_factory) -> Path:
    """A 4-layer, hidden-32 BERT classifier with the three synthetic labels."""
    return build_tiny_bert(tiny_tokenizer_dir, tmp_path_factory.mktemp("teacher"))


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    """train/validation/test jsonl files with `text` and string `label` columns."""
    out = tmp_path_factory.mktemp("data")
    write_jsonl(out / "train.jsonl", make_examples(48, seed=1))
    write_jsonl(out / "validation.jsonl", make_examples(12, seed=2))
    write_jsonl(out / "test.jsonl", make_examples(12, seed=3))
    return out
