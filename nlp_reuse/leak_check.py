"""The test-text leak check between `nlp-reuse adapt` and a later `finetune` or `distill` on the adapted folder.

adapt reads only the train split of labelled data, carved as `load_splits` carves it. A later run on the same data
that carves with other settings (another --split_seed, other split sizes, another --label_column: the carving is
stratified by label) validates and tests on texts the adapted encoder was trained on, and its metrics are
optimistic without a sign of it. adapt's report.json records, per labelled source, the settings it carved with
(`texts.sources[].split`), and per file its resolved path; `check_adapted_splits` compares them with the run's before
anything is written. A file adapt read whole (--unlabeled_file) that the run reads as labelled data is refused
whatever the settings: every text it holds was an adaptation text.
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
HELD_OUT = ("validation", "test")


def split_settings(data: DataArguments) -> dict:
    """The settings besides the source with which `load_splits` carves the train split out of `data`."""
    hub = data.dataset_name is not None and not data.dataset_name.startswith("builtin:")
    return {"dataset_config": data.dataset_config if hub else None, "text_column": data.text_column,
            **{name: getattr(data, name) for name in CARVING_SETTINGS}}


def _carved_settings(data: DataArguments) -> dict[str, str]:
    """The carving settings that decide the run's carved held-out splits, each mapped to the adaptation's setting it
    must equal for those splits to hold no adaptation text.

    Without held-out files, or with a --validation_file only, the test split is carved first, as adaptation carved
    it (then the validation split: its size counts only without a --validation_file). With a --test_file only, the
    validation split is carved first, from the whole file: it takes the rows of adaptation's test split only when
    carved with that split's size. With both files nothing is carved.
    """
    files = data.dataset_name is None
    if files and data.test_file is not None:
        if data.validation_file is not None:
            return {}
        return {"split_seed": "split_seed", "validation_split_size": "test_split_size", "label_column": "label_column"}
    return {name: name for name in CARVING_SETTINGS
            if not (name == "validation_split_size" and files and data.validation_file is not None)}


def _same_texts(source: dict, data: DataArguments) -> bool:
    """Whether the run reads the labelled texts that `source` (one of adapt's labelled text sources) named."""
    if source.get("flag") == "dataset_name":
        same = data.dataset_name == source.get("name")
    else:  # train_file
        same = data.dataset_name is None and _source_path(source) == Path(data.train_file).resolve()
    recorded, current = source.get("split") or {}, split_settings(data)
    return same and all(recorded.get(name, current[name]) == current[name] for name in SOURCE_SETTINGS)


def _source_path(source: dict) -> Path:
    """The resolved path adapt recorded for a file source (a report from before it did: the name, resolved here)."""
    return Path(source.get("path") or source.get("name", "")).resolve()


def _adapt_flags(compared: dict[str, str], values: dict) -> str:
    """adapt's split flags that carve as the run does with the settings `values` (the run's names)."""
    return " ".join(f"--{theirs} {values[ours]}" for ours, theirs in compared.items())


def _unlabeled_file_leak(source: dict, data: DataArguments, model: str, flag: str) -> str | None:
    """The error message when the run reads a file that adaptation read whole as --unlabeled_file (a labelled file
    is accepted there) as its --train_file with a carved held-out split, or as its --validation_file / --test_file."""
    if data.dataset_name is not None:
        return None
    path = _source_path(source)
    files = {"train": data.train_file, "validation": data.validation_file, "test": data.test_file}
    same = [split for split, file in files.items() if file is not None and Path(file).resolve() == path]
    held = [split for split in HELD_OUT if split in same or ("train" in same and files[split] is None)]
    if not held:
        return None
    splits = " and ".join(held)
    fixes = []
    if "train" in same:
        fixes.append(f"pass {data.train_file} to adapt as --train_file, not --unlabeled_file, with this run's split "
                     f"flags, so only its train split is read (nlp-reuse adapt --train_file {data.train_file} "
                     f"{_adapt_flags(_carved_settings(data), split_settings(data))} --output_dir NEW_FOLDER)")
    fixes += [f"leave this run's --{split}_file out of the adaptation texts" for split in HELD_OUT if split in same]
    return format_error(
        f"{flag} {model} was adapted (nlp-reuse adapt) on every text of --unlabeled_file {source['name']}, which "
        f"this run reads as labelled data: texts of this run's {splits} split{'s' if len(held) > 1 else ''} were "
        f"adaptation texts, so its {splits} metrics would be optimistic.",
        "held-out data that adaptation did not read",
        ", ".join(f"--{split}_file {files[split]}" for split in same) + f" is the adaptation's --unlabeled_file "
        f"{source['name']}" + (f" ({splits} carved from it)" if "train" in same else ""),
        f"adapt again on texts that exclude the held-out data and start from that folder: {'; '.join(fixes)}",
    )


def adapted_split_leak(adaptation: dict, data: DataArguments, model: str,
                       flag: str = "--model_name_or_path") -> str | None:
    """The error message when a run on `data` from the folder `model` (given as `flag`), which `nlp-reuse adapt`
    wrote with the report `adaptation`, validates or tests on adaptation texts: it carves its held-out splits from a
    labelled source of the adaptation with other split settings, or reads an --unlabeled_file of the adaptation as
    labelled data; None when it does not (other data, the same settings).

    A report from before adapt recorded `split` per source gives `adaptation.split_seed` only, so only that is
    compared. Whether a Hub dataset ships its own validation and test splits (then not carved) is not recorded:
    the check takes them as carved.
    """
    compared = _carved_settings(data)
    current = split_settings(data)
    for source in adaptation.get("texts", {}).get("sources", []):
        if source.get("flag") == "unlabeled_file":
            message = _unlabeled_file_leak(source, data, model, flag)
            if message is not None:
                return message
            continue
        if not compared or not _same_texts(source, data):
            continue
        recorded = source.get("split") or {"split_seed": adaptation.get("adaptation", {}).get("split_seed")}
        # The adaptation's values under the run's names.
        wanted = {ours: recorded[theirs] for ours, theirs in compared.items() if recorded.get(theirs) is not None}
        differ = [name for name in wanted if wanted[name] != current[name]]
        if not differ:
            continue
        kept = {ours: theirs for ours, theirs in compared.items() if ours in wanted}
        if data.dataset_name is None and data.test_file is not None:
            held_out = "validation"
        else:
            held_out = "test" if set(differ) - {"validation_split_size"} else "validation"
        theirs = _adapt_flags(kept, wanted)
        ours = " ".join(f"--{name} {wanted[name]}" for name in wanted)
        rerun = (f"re-run with the adaptation's split flags {theirs}" if ours == theirs else
                 f"re-run with {ours} (beside a --test_file the validation split is carved from the whole file, as "
                 f"the adaptation carved its test split)")
        hub = source["flag"] == "dataset_name" and not source["name"].startswith("builtin:")
        return format_error(
            f"{flag} {model} was adapted (nlp-reuse adapt) on the train split of --{source['flag']} "
            f"{source['name']} carved with other split settings than this run's: texts of this run's {held_out} "
            f"split were adaptation texts, so its {held_out} metrics would be optimistic."
            + (f" (The check could not tell whether {source['name']} ships its own validation and test splits, which "
               "are not carved: it takes them as carved.)" if hub else ""),
            f"the split settings the adaptation carved with: {theirs}",
            ", ".join(f"--{name} {current[name]} (the adaptation: "
                      f"{'' if kept[name] == name else f'--{kept[name]} '}{wanted[name]})" for name in differ),
            f"{rerun}, or adapt again with this run's (nlp-reuse adapt --{source['flag']} {source['name']} "
            f"{_adapt_flags(kept, current)} --output_dir NEW_FOLDER) and start from that folder",
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
