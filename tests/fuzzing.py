"""The strategies and the oracle shared by the property-based tests of the input readers (test_sources_fuzz.py,
test_sources_fuzz_jsonl.py, test_config_fuzz.py): example counts, generated texts, labels and encodings, and the
expected outcome (rows, or a one-line error naming the file and line) of each generated file."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import strategies as st

from ladc.errors import LadcError

# LADC_FUZZ_SCALE=20 multiplies every count and draws fresh random inputs (a deeper run by hand; see the report)
SCALE = int(os.environ.get("LADC_FUZZ_SCALE", "1"))
EXAMPLES = {
    name: count * SCALE
    for name, count in {"glue_tsv": 300, "csv": 200, "jsonl": 200, "yaml": 200, "yaml_bytes": 100}.items()
}
SETTINGS = {
    "deadline": None,
    "derandomize": SCALE == 1,  # by default the same inputs on every run: a failure in CI reproduces locally
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
}
HUGE_FIELD = 200_000  # characters: over csv's default field limit (131,072), which ladc raises while it reads

# fields: any character but the ones that end a line or a TSV cell (NUL, U+0085, U+2028, quotes included)
CELL_TEXT = st.text(st.characters(blacklist_characters="\t\r\n", blacklist_categories=("Cs",)), max_size=24)
EMPTY_TEXTS = st.sampled_from(["", " ", "\xa0", "\x0b "])  # an empty text field is an error (the "empty_text" fault)


def some_text(strategy):
    """Text fields hold something to tokenize (an empty one is its own fault): a blank draw gets a letter."""
    return strategy.map(lambda text: text if text.strip() else text + "w")


BLANK_LINES = st.sampled_from(["", " ", "\t", "  \t ", "\x0b", "\x0c", "\xa0", "\t\t\t"])
PAIR_TASKS = ["sst2", "rte", "stsb", "mnli"]  # one text, two texts, regression, three classes


# ----------------------------------------------------------------------------- the oracle


class Expected(Exception):
    """What the oracle predicts instead of rows: a LadcError with these fragments (and `line N` when given)."""

    def __init__(self, *fragments: str, line: int | None = None):
        super().__init__(fragments)
        self.fragments, self.line = fragments, line


def oracle_label(text: str | None, task, split_kind: str):
    """The documented label rules: names by name, ids 0..C-1, finite float32 scores; test rows may be unlabelled."""
    text = "" if text is None else str(text).strip()
    if split_kind == "test" and text in ("", "-1", "-1.0"):
        return -1.0 if task.is_regression else -1
    if task.is_regression:
        try:
            score = float(text)
        except ValueError:
            score = math.nan
        if not (math.isfinite(score) and abs(score) <= 3.4028234663852886e38):
            raise Expected("is not a number")
        return score
    if text in task.label_names:
        return task.label_names.index(text)
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None and number.is_integer() and 0 <= number < task.num_labels:
        return int(number)
    raise Expected("unknown label", f"for {task.name}")


def oracle_bytes(data: bytes) -> str:
    """Decoded text, or the encoding error the readers must report (offset and line of the first bad byte)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise Expected("UTF-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise Expected("is not UTF-8", f"byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line})") from None


def assert_outcome(load, path: Path, expected):
    """`load()` gives `expected` rows, or raises the one-line LadcError the oracle predicted."""
    if isinstance(expected, Expected):
        with pytest.raises(LadcError) as error:
            load()
        message = str(error.value)
        assert "\n" not in message and "\r" not in message, message
        assert str(path) in message, message
        for fragment in expected.fragments:
            assert fragment in message, (fragment, message)
        if expected.line is not None:
            assert f"line {expected.line}:" in message, (expected.line, message)
        assert len(message) < 400, message  # a user's huge cell never floods the terminal
        return
    raw = load()
    rows = [tuple(row[name] for name in raw.column_names if name != "idx") for row in raw]
    assert len(rows) == len(expected)
    for got, want in zip(rows, expected, strict=True):
        assert got[:-1] == want[:-1]
        assert got[-1] == pytest.approx(want[-1], rel=1e-6)  # float32 scores
    assert raw["idx"] == list(range(len(expected)))


def is_blank(cells: list[str]) -> bool:
    return all(not cell.strip() for cell in cells)


def read_line(line: int, cells) -> list[str]:
    """What the reader meets on a line: its cells, or the syntax error it must report there (no length limit)."""
    if isinstance(cells, Expected):
        raise Expected(*cells.fragments, line=line)
    return cells


def nonempty(line: int, texts, names) -> tuple:
    """The texts of a row, or the error an empty (or whitespace-only) one must give."""
    for text, name in zip(texts, names, strict=True):
        if not text.strip():
            raise Expected(f"text field '{name}' is empty", line=line)
    return tuple(texts)


def labelled(line: int, text: str | None, task, split_kind: str):
    try:
        return oracle_label(text, task, split_kind)
    except Expected as expected:
        raise Expected(*expected.fragments, line=line) from None


def encode(text: str, encoding: str) -> bytes:
    if encoding == "utf-16":
        return text.encode("utf-16")
    if encoding == "latin-1":
        return text.encode("latin-1", errors="replace")
    return text.encode(encoding)


def valid_labels(task) -> list[str]:
    if task.is_regression:
        return ["0", "5.000", "3.800", " 0.25 ", "4", "-1.5"]
    return [*task.label_names, *(str(i) for i in range(task.num_labels)), "1.0", f" {task.label_names[0]} "]


def bad_labels(task) -> list[str]:
    if task.is_regression:
        return ["positive", "entailment", "nan", "inf", "-inf", "1e39", "", "five"]
    return ["maybe", "2.5", "0.25", str(task.num_labels), "-1", "", "1e400", "nan", "Positive", "acceptable!"]


# ----------------------------------------------------------------------------- column names and texts of CSV / TSV and JSONL

COLUMN_NAMES = st.text(
    st.characters(blacklist_characters="\r\n\t", blacklist_categories=("Cs",)), min_size=1, max_size=8
).filter(lambda name: name.strip() and name == name.strip() and not name.startswith('"'))


# CSV fields may hold anything, line ends and quotes included: the writer quotes them
CSV_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=24)
