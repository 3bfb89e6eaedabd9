"""The parsers of outside files, fed arbitrary bytes (hypothesis): each returns its typed record
or raises one ``ValueError`` / ``MistError`` line, never another exception."""

import json
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mistnet.config import Config, load_json, load_preset
from mistnet.data.annotations import read_boxes, read_labels
from mistnet.errors import MistError
from mistnet.runlog import LogRecord, read_log

IMAGES = ["a.png", "sub/b.png"]

# JSON values, and lines of the sort each format holds, so that draws reach the checks behind
# the decoder and not only its syntax errors.
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
COCO_KEYS = st.sampled_from(["images", "annotations", "categories", "id", "file_name", "name"])
COCO = st.recursive(
    JSON,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(COCO_KEYS, inner, max_size=4),
    max_leaves=16,
)
CSV_CELL = st.sampled_from(["a.png", "b.png", "nope.png", "1", "-2.5", "nan", "cat", "", "²"])
CSV = st.lists(st.lists(CSV_CELL, max_size=6), max_size=5).map(
    lambda rows: "\n".join(",".join(r) for r in rows)
)
TOML_LINE = st.sampled_from(
    ["[model]", "[train]", "[data]", "k = 4", "k = -1", "lr_task = nan", "model = 3", "x = [[[1]]]"]
)
LOG_KEYS = st.sampled_from(["step", "split", "wall", "task", "both"])
LOG_LINE = st.dictionaries(LOG_KEYS, JSON, max_size=5).map(json.dumps)


def bytes_or(text_strategy):
    """Arbitrary bytes, or text of the format encoded as UTF-8 (with a BOM sometimes)."""
    text = st.tuples(st.booleans(), text_strategy).map(lambda t: ("\ufeff" if t[0] else "") + t[1])
    return st.binary(max_size=200) | text.map(str.encode)


def one_line_error(parse, data: bytes, suffix: str, record_type):
    """``parse(path)`` of a file holding ``data``: a ``record_type``, or one error line."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"input{suffix}"
        path.write_bytes(data)
        try:
            result = parse(path)
        except (ValueError, MistError) as exc:
            assert "\n" not in str(exc) and str(exc), repr(exc)
            return None
        assert isinstance(result, record_type), result
        return result


settings_ = settings(max_examples=80, deadline=None)


@settings_
@given(bytes_or(COCO.map(json.dumps)))
def test_coco_annotations(data):
    one_line_error(
        lambda p: read_boxes(p, Path("root"), [Path("root", n) for n in IMAGES]),
        data,
        ".json",
        tuple,
    )


@settings_
@given(bytes_or(CSV.map(lambda t: "filename,cx,cy,w,h,class\n" + t)))
def test_boxes_csv(data):
    one_line_error(
        lambda p: read_boxes(p, Path("root"), [Path("root", n) for n in IMAGES]),
        data,
        ".csv",
        tuple,
    )


@settings_
@given(bytes_or(CSV))
def test_labels_csv(data):
    one_line_error(
        lambda p: read_labels(p, Path("root"), [Path("root", n) for n in IMAGES]),
        data,
        ".csv",
        dict,
    )


@settings_
@given(bytes_or(st.lists(TOML_LINE, max_size=6).map("\n".join)))
def test_toml_configs(data):
    one_line_error(lambda p: load_preset(str(p)), data, ".toml", Config)


@settings_
@given(bytes_or(JSON.map(json.dumps)))
def test_run_config_json(data):
    one_line_error(load_json, data, ".json", Config)


@settings_
@given(bytes_or(st.lists(LOG_LINE, max_size=4).map("\n".join)))
def test_logs(data):
    records = one_line_error(read_log, data, ".jsonl", list) or []
    assert all(isinstance(r, LogRecord) and r.step >= 0 for r in records)


def test_the_readers_name_an_argument_of_the_wrong_type():
    """Before: ``read_log(None)`` gave pathlib's "argument should be a str or an os.PathLike
    object", ``card_problem(None)`` an AttributeError."""
    from mistnet.pretrained import card_problem

    with pytest.raises(TypeError, match="^path must be a path as text, got NoneType$"):
        read_log(None)
    assert card_problem(None) == "the card is NoneType, not a map of its fields"


def test_a_log_splits_at_newlines_only_and_counts_blank_lines(tmp_path):
    """Before: a line whose JSON string held U+2028 (valid JSON) was cut there by
    ``str.splitlines`` and called "not valid JSON"; a damaged line after a blank one was named
    by its count of non-blank lines."""
    path = tmp_path / "log.jsonl"
    path.write_text('{"step": 1, "split": "train", "a\u2028x": 1.0}\n\n{"step": 2}\n')
    try:
        read_log(path)
    except MistError as exc:
        assert str(exc).startswith(f"{path} line 3: "), exc
    else:
        raise AssertionError("a line without 'split' was read")
    path.write_text('{"step": 1, "split": "train", "a\u2028x": 1.0}\n')
    assert [list(r.values) for r in read_log(path)] == [["a\u2028x"]]


def test_a_log_whose_steps_go_back_is_refused(tmp_path):
    """Before: a log of two runs joined (steps 20 then 5) was plotted zig-zag, and a resume
    kept its stale lines."""
    path = tmp_path / "log.jsonl"
    lines = [{"step": s, "split": sp, "wall": 1.0} for s, sp in [(5, "train"), (5, "val"),
                                                                 (20, "train"), (5, "train")]]  # fmt: skip
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(MistError, match=r"log.jsonl line 4: step 5 after step 20; a run's log"):
        read_log(path)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines[:3]))
    assert [r.step for r in read_log(path)] == [5, 5, 20]  # equal steps: train and val lines


@pytest.mark.parametrize(
    "last, message",
    [
        (
            {"step": 20, "split": "test", "both": 0.5},
            "'split' must be \"train\" or \"val\", got 'test'",
        ),
        ({"step": 20, "split": "", "both": 0.5}, "'split' must be \"train\" or \"val\", got ''"),
        ({"step": 20, "split": "val", "both": 0.5}, "a second val line of step 20"),
    ],
)
def test_a_log_line_of_another_split_or_a_step_logged_twice_is_refused(tmp_path, last, message):
    """Before: a line of split "test" (or "") was drawn by ``mist plot`` as curves of its own,
    and a step logged twice in one split as two points at that step; the loop writes train
    and val lines, each step once."""
    path = tmp_path / "log.jsonl"
    lines = [{"step": 20, "split": "train", "wall": 1.0}, {"step": 20, "split": "val", "both": 0.4}]
    path.write_text("".join(json.dumps(line) + "\n" for line in [*lines, last]))
    with pytest.raises(MistError, match=f"log.jsonl line 3: {re.escape(message)}"):
        read_log(path)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert [(r.step, r.split) for r in read_log(path)] == [(20, "train"), (20, "val")]
