"""Constants and helpers shared by the publishing tests (tests/test_hub_card.py, tests/test_hub_upload.py) and
their fixtures in conftest.py."""

import http.client
import re
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from hub_standin import HubStandIn

TOKEN = "hf_nlpReuseStandInToken0123456789abcdef"
TREC6 = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
REPO = "me/tiny-student"
TEACHER_COMMAND = "python scripts/finetune.py --config configs/trec6_teacher.yaml --output_dir runs/demo/teacher"
# transformers 5 saves a fast tokenizer as tokenizer.json + tokenizer_config.json only (no vocab.txt, no
# special_tokens_map.json); the ONNX folders come from torch.onnx + onnxruntime, so no Optimum ort_config.json.
ROOT_FILES = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}
ONNX_FILES = {"compression.json", "config.json", "tokenizer.json", "tokenizer_config.json"}
DELIVERABLES = (ROOT_FILES | {"README.md", "report.json", "run_args.json", "export_report.json"}
                | {f"onnx/{f}" for f in ONNX_FILES | {"model.onnx"}}
                | {f"onnx_int8/{f}" for f in ONNX_FILES | {"model_quantized.onnx"}})
# huggingface_hub 2 fetches this public registry once per process, without a token, before its first request.
AGENT_REGISTRY = "/api/agent-harnesses"


def split_card(card: str) -> tuple[dict, str]:
    match = re.match(r"^---\n(.*?)\n---\n(.*)$", card, re.DOTALL)
    assert match, "card has no front matter"
    return yaml.safe_load(match.group(1)), match.group(2)


def table_rows(body: str) -> dict[str, list[str]]:
    """Results table: first cell -> the other cells."""
    section = body.split("## Results")[1].split("## ")[0]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines() if line.startswith("| ")]
    return {row[0]: row[1:] for row in rows[1:]}


def expected_cells(entry: dict, teacher: dict) -> list[str]:
    def params(n):
        return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"

    return [f"{entry['test']['accuracy']:.4f}", f"{entry['test']['macro_f1']:.4f}", params(entry["params"]),
            f"{entry['size_mb']:.2f}", f"{entry['latency_ms']:.2f}", f"{teacher['size_mb'] / entry['size_mb']:.1f}x",
            f"{teacher['latency_ms'] / entry['latency_ms']:.1f}x"]


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def api_requests(hub: HubStandIn) -> list:
    """The stand-in's requests without the client's agent-harness registry lookup, after checking that lookup was a
    plain GET that carried no token (it is telemetry, not part of a push, and made at most once per process)."""
    lookups = [r for r in hub.requests if r.path == AGENT_REGISTRY]
    assert all(r.method == "GET" and r.authorization is None for r in lookups), lookups
    return [r for r in hub.requests if r.path != AGENT_REGISTRY]


def http_status(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> int:
    """Status of one plain HTTP request (http.client: no proxy from the environment can be involved)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    try:
        connection.request(method, parts.path, body=body, headers=headers or {})
        return connection.getresponse().status
    finally:
        connection.close()
