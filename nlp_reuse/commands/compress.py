"""Joint compression of a distilled student: structured pruning by distillation importance -> distillation recovery
-> quantization-aware distillation (NNCF) -> static int8, beside dynamic and post-training static int8 and an
OpenVINO runtime, every artefact measured against the teacher in one process.

Example (the 3-layer student of `make demo`):
    nlp-reuse compress --model_dir runs/demo/distill/student --teacher_model_name_or_path runs/demo/teacher \\
        --dataset_name builtin:trec6 --output_dir runs/demo/compress --prune_heads_fraction 0.67 \\
        --prune_ffn_fraction 0.5 --recovery_epochs 3 --qat_epochs 1 --openvino int8

Writes OUTPUT_DIR/pytorch/ (pruned), onnx/, onnx_int8/ (dynamic), onnx_static_int8/ (post-training static),
onnx_qat_int8/ (QAT), openvino_int8/, compress_report.json, compress.md and benchmark.{json,md,png}. The training
split feeds importance, recovery, QAT and calibration; validation the accuracy guard; test the benchmark. QAT and
OpenVINO need `pip install 'nlp_reuse[openvino]'`.
"""

import sys

from nlp_reuse.cli import make_parser, parse_args
from nlp_reuse.compress.artifacts import check_model_dir
from nlp_reuse.compress.joint import CompressArguments, check_optional_libraries, compress_student
from nlp_reuse.compress.labels import model_label_names, split_texts
from nlp_reuse.config import DataArguments
from nlp_reuse.data import load_splits


def main(argv: list[str] | None = None) -> dict:
    data_args, args = parse_args(make_parser((DataArguments, CompressArguments), __doc__), argv)
    check_optional_libraries(args)
    check_model_dir(args.model_dir)  # bad folders fail before the data is read
    check_model_dir(args.teacher_model_name_or_path)
    splits, _ = load_splits(data_args, label_names=model_label_names(args.model_dir))
    report = compress_student(args, {name: split_texts(splits, name) for name in ("train", "validation", "test")},
                              max_length=data_args.max_length)
    print(f"Deliverable: {args.output_dir}/{report['deliverable']}; report in {args.output_dir}/compress_report.json",
          file=sys.stderr)
    return report


if __name__ == "__main__":
    main()
