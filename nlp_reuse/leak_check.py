"""The test-text leak check between `nlp-reuse adapt` and a later `finetune` or `distill` on the adapted folder.

adapt reads only the train split of labelled data, carved as `load_splits` carves it. A later run on the same data
that carves with other settings (another --split_seed, other split sizes, another --label_column: the carving is
stratified by label) validates and tests on texts the adapted encoder was trained on, and its metrics are
optimistic without a sign of it. adapt's report.json records, per labelled source, the settings it carved with
(`texts.sources[].split`); `check_adapted_splits` compares them with the run's before anything is written.
"""

from __future__ import annotations

from pathlib import Path

from nlp_reuse.config import DataArguments
from nlp_reuse.errors import ConfigError, format_error
from nlp_reuse.report import REPORT_FILE, read_json_object

# Settings that only say which texts are read: another value reads other texts, which adaptation never saw.
SOURCE_SETTINGS = ("dataset_config", "text_column")
# Settings that decide which rows the carved validation and test splits take.
CARVING_SETTINGS = ("split_seed", "test_split_size", "validation_split_size", "label_column")


def split_settings(data: DataArguments) -> dict:
    """The settings besides the source with which `load_splits` carves the train split out of `data`."""
    hub = data.dataset_name is not None and not data.dataset_name.startswith("builtin:")
    return {"dataset_config": data.dataset_config if hub else None, "text_column": data.text_column,
            **{name: getattr(data, name) for name in CARVING_SETTINGS}}


def _carved_settings(data: DataArguments) -> tuple[str, ...]:
    """The carving settings that matter to the run's held-out splits: none with a --test_file of its own (the test
    split is not carved: adaptation's carving cannot reach it), and not the validation size with a --validation_file."""
    files = data.dataset_name is None
    if files and data.test_file is not None:
        return ()
    return tuple(name for name in CARVING_SETTINGS
                 if not (name == "validation_split_size" and files and data.validation_file is not None))


def _same_texts(source: dict, data: DataArguments) -> bool:
    """Whether the run reads the labelled texts that `source` (one of adapt's text sources) named."""
    if source.get("flag") == "dataset_name":
        same = data.dataset_name == source.get("name")
    elif source.get("flag") == "train_file":
        # The resolved path adapt recorded (a report from before it did: the name, resolved here).
        same = data.dataset_name is None and (
            Path(source.get("path") or source.get("name", "")).resolve() == Path(data.train_file).resolve())
    else:
        return False
    recorded, current = source.get("split") or {}, split_settings(data)
    return same and all(recorded.get(name, current[name]) == current[name] for name in SOURCE_SETTINGS)


def adapted_split_leak(adaptation: dict, data: DataArguments, model: str,
                       flag: str = "--model_name_or_path") -> str | None:
    """The error message when a run on `data` from the folder `model` (given as `flag`), which `nlp-reuse adapt`
    wrote with the report `adaptation`, carves its held-out splits from a labelled source of the adaptation with
    other split settings; None when it does not (other data, unlabeled files only, the same settings).

    A report from before adapt recorded `split` per source gives `adaptation.split_seed` only, so only that is
    compared.
    """
    compared = _carved_settings(data)
    current = split_settings(data)
    for source in adaptation.get("texts", {}).get("sources", []):
        if not compared or not _same_texts(source, data):
            continue
        recorded = source.get("split") or {"split_seed": adaptation.get("adaptation", {}).get("split_seed")}
        recorded = {name: recorded[name] for name in compared if recorded.get(name) is not None}
        differ = [name for name in recorded if recorded[name] != current[name]]
        if not differ:
            continue
        held_out = "test" if set(differ) - {"validation_split_size"} else "validation"
        theirs = " ".join(f"--{name} {value}" for name, value in recorded.items())
        ours = " ".join(f"--{name} {current[name]}" for name in recorded)
        return format_error(
            f"{flag} {model} was adapted (nlp-reuse adapt) on the train split of --{source['flag']} "
            f"{source['name']} carved with other split settings than this run's: texts of this run's {held_out} "
            f"split were adaptation texts, so its {held_out} metrics would be optimistic.",
            f"the split settings the adaptation carved with: {theirs}",
            ", ".join(f"--{name} {current[name]} (the adaptation: {recorded[name]})" for name in differ),
            f"re-run with the adaptation's split flags {theirs}, or adapt again with this run's (nlp-reuse adapt "
            f"--{source['flag']} {source['name']} {ours} --output_dir NEW_FOLDER) and start from that folder",
        )
    return None


def check_adapted_splits(model_name_or_path: str, data: DataArguments, flag: str = "--model_name_or_path") -> None:
    """Raise a ConfigError when the local folder `model_name_or_path` is an adapted encoder whose adaptation read
    texts of the held-out splits this run carves from `data` (see `adapted_split_leak`); call it before the output
    folder is touched."""
    path = Path(model_name_or_path).expanduser() / REPORT_FILE
    report = read_json_object(path) if path.is_file() else {}
    if "masked_lm_loss" not in report:  # not an adaptation report (a Hub id, a classifier's run, none)
        return
    message = adapted_split_leak(report, data, model_name_or_path, flag)
    if message is not None:
        raise ConfigError(message)
