"""Reading the user's data files (.csv, .tsv, .jsonl, .json, .parquet) into DataFrames, with every way a file can be
unreadable (empty, not UTF-8, a broken line, another separator, a corrupt parquet) turned into a DataError that
names the file, the line when known, and the fix."""

import json
import logging
import re
from pathlib import Path

import pandas as pd

from nlp_reuse.errors import DataError, format_error

logger = logging.getLogger(__name__)

# Text files are read as UTF-8 (a BOM, as Excel's "CSV UTF-8" writes it, is skipped). Anything else is refused rather
# than decoded as Latin-1: Latin-1 decoding never fails, so a Windows-1252 or other code page file would load as
# silent mojibake the model then trains on, and only the user knows which encoding the file really has.
ENCODING = "utf-8-sig"


def _csv_separator(path: Path, default: str) -> str:
    """The separator of a .csv file: ',' unless its header line has none but has ';' or a tab (Excel in many
    locales writes ';'). A header is never a single column holding ';': the data needs a text and a label column."""
    with path.open(encoding=ENCODING, errors="replace") as f:
        header = f.readline()
    if default == "," and "," not in header:
        for sep in (";", "\t"):
            if sep in header:
                logger.info("%s: the header line %r has no ',' but has %r: reading the file as %r-separated.",
                            path, header.strip()[:80], sep, sep)
                return sep
    return default


def _read_csv(path: Path, flag: str, sep: str) -> pd.DataFrame:
    sep = _csv_separator(path, sep)
    name = "tab" if sep == "\t" else repr(sep)
    try:
        # Only an empty field is missing: texts such as "NA", "None" or "null" are texts, not gaps.
        df = pd.read_csv(path, sep=sep, encoding=ENCODING, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError as err:  # only blank lines: no header to parse
        raise DataError(format_error(
            f"{flag} is empty.", "a header line (e.g. text,label) and one line per example", "only blank lines",
            "check the path, or write the data again",
        )) from err
    except pd.errors.ParserError as err:
        line = re.search(r"line (\d+)", str(err))
        raise DataError(format_error(
            f"{flag} cannot be parsed as a {name}-separated file{f' at line {line[1]}' if line else ''}.",
            f"as many {name}-separated fields on every line as in the header, texts that contain {name} or "
            "line breaks in double quotes", str(err).replace("Error tokenizing data. C error: ", "").strip(),
            "quote the fields that contain the separator (pandas' to_csv and Excel do), or save the file as .jsonl",
        )) from err
    # A first data line with one field more than the header makes pandas take the first column as an index and
    # shift every column left: texts would become labels without an error.
    if not isinstance(df.index, pd.RangeIndex):
        raise DataError(format_error(
            f"{flag} cannot be parsed as a {name}-separated file at line 2.",
            f"as many fields on every line as in the header ({len(df.columns)}: {list(df.columns)})",
            f"{len(df.columns) + 1} fields on line 2",
            f"quote the texts that contain {name} (pandas' to_csv and Excel do), or save the file as .jsonl",
        ))
    return df


def _broken_json(path: Path, lines: bool) -> tuple[int, str, str] | None:
    """(1-based line, the start of that line, what is wrong) of the first bad JSON in `path`, or None."""
    text = path.read_text(encoding=ENCODING)
    if not lines:
        try:
            json.loads(text)
        except json.JSONDecodeError as err:
            all_lines = text.splitlines()
            start = all_lines[err.lineno - 1][:80] if err.lineno <= len(all_lines) else ""
            return err.lineno, start, f"{err.msg} (column {err.colno})"
        return None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            return number, line[:80], f"{err.msg} (column {err.colno})"
        if not isinstance(value, dict):
            return number, line[:80], f"a JSON {type(value).__name__}, not an object"
    return None


def _read_json(path: Path, flag: str, lines: bool | None) -> pd.DataFrame:
    if lines is None:  # .json: an array of objects, or one object per line
        with path.open(encoding=ENCODING, errors="replace") as f:
            lines = f.read(4096).lstrip()[:1] != "["
    try:
        return pd.read_json(path, lines=lines, encoding=ENCODING)
    except UnicodeDecodeError:  # a ValueError too; _read_file names the offset
        raise
    except (ValueError, TypeError) as err:  # pandas' JSON errors give a character position, not a line
        broken = _broken_json(path, lines)
        if broken is None:
            raise
        number, start, problem = broken
        raise DataError(format_error(
            f"{flag} is not valid {'JSON Lines' if lines else 'JSON'}: line {number} cannot be read.",
            "one JSON object per line, e.g. {\"text\": \"...\", \"label\": \"...\"}" if lines
            else "a JSON array of objects",
            f"{problem}; line {number} starts {start!r}", f"fix or delete line {number} of {path}",
        )) from err


def _read_parquet(path: Path, flag: str) -> pd.DataFrame:
    import pyarrow as pa  # pandas reads parquet through pyarrow

    try:
        return pd.read_parquet(path)
    except pa.ArrowInvalid as err:
        raise DataError(format_error(
            f"{flag} cannot be read as Parquet.", "a complete .parquet file (e.g. written by DataFrame.to_parquet)",
            f"{path.stat().st_size:,} bytes; {err}", "write the file again, or save the data as .csv or .jsonl",
        )) from err


FILE_READERS = {
    ".csv": lambda p, flag: _read_csv(p, flag, ","),
    ".tsv": lambda p, flag: _read_csv(p, flag, "\t"),
    ".jsonl": lambda p, flag: _read_json(p, flag, lines=True),
    ".json": lambda p, flag: _read_json(p, flag, lines=None),
    ".parquet": _read_parquet,
}


def not_utf8_error(path: Path, flag: str, data: bytes, offset: int) -> DataError:
    line = data.count(b"\n", 0, offset) + 1
    return DataError(format_error(
        f"{flag} is not UTF-8 text (Latin-1 or Windows-1252?).", "a UTF-8 encoded file",
        f"byte 0x{data[offset]:02x} at byte offset {offset} (line {line}), which is not UTF-8",
        f"convert it: iconv -f latin1 -t utf-8 {path} > {path.with_stem(path.stem + '-utf8')} (-f cp1252 for a "
        "Windows file), or re-save it as UTF-8 (Excel: 'CSV UTF-8')",
    ))


def read_data_file(path: str, split: str) -> pd.DataFrame:
    """The --{split}_file as a DataFrame; an unreadable, empty or mis-encoded file is a DataError naming it."""
    p = Path(path)
    flag = f"--{split}_file {path}"
    if not p.is_file():
        raise DataError(f"--{split}_file {path} does not exist: expected a .csv, .jsonl, .json or .parquet file.")
    reader = FILE_READERS.get(p.suffix.lower())
    if reader is None:
        raise DataError(
            f"--{split}_file {path} has the suffix {p.suffix!r}: expected one of {sorted(FILE_READERS)}."
        )
    if p.stat().st_size == 0:
        raise DataError(format_error(
            f"{flag} is empty.", "a file with one labelled example per row (a .csv also needs its header line)",
            "0 bytes", "check the path, or write the data again",
        ))
    try:
        df = reader(p, flag)
    except UnicodeDecodeError as err:  # pandas' offset is into its read buffer: find the file's own offset
        data = p.read_bytes()
        try:
            data.decode(ENCODING)
        except UnicodeDecodeError as whole:
            raise not_utf8_error(p, flag, data, whole.start) from err
        raise
    if len(df) == 0:
        carve = ("" if split in ("train", "extra_train") else
                 f", or leave --{split}_file unset to carve the split from the train data")
        raise DataError(format_error(
            f"The {split} split is empty: {flag} has no rows.", "at least one labelled example",
            f"the columns {list(df.columns)} and no rows" if len(df.columns) else "no rows",
            f"add examples to {path}{carve}",
        ))
    return df
