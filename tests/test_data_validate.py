"""cd4ml.data.validate: each kind of bad input is counted, with examples, in the report."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from cd4ml.config import SourceConfig
from cd4ml.data import Column, Schema, read_source, validate
from cd4ml.data.validate import Failure, ValidationReport
from cd4ml.errors import ValidationFailed

HEADER = "Store,Dept,Date,Weekly_Sales,IsHoliday\n"
ROWS = ["1,1,2010-02-05,24924.5,FALSE", "1,1,2010-02-12,46039.49,TRUE",
        "1,2,2010-02-05,50605.27,FALSE", "2,1,2010-02-05,100.0,FALSE"]


@pytest.fixture()
def schema() -> Schema:
    return Schema(name="sales", unique_keys=["Store", "Dept", "Date"], columns=[
        Column(name="Store", type="int", min=1, max=45),
        Column(name="Dept", type="int", min=0),
        Column(name="Date", type="date", min="2010-01-01"),
        Column(name="Weekly_Sales", type="float", min=0),
        Column(name="IsHoliday", type="bool"),
    ])


def _read(tmp_path: Path, rows: list[str], header: str = HEADER) -> pd.DataFrame:
    (tmp_path / "s.csv").write_text(header + "\n".join(rows) + "\n")
    return read_source("sales", SourceConfig(path="s.csv", dates=["Date"]), tmp_path)


def _only(report: ValidationReport, check: str) -> Failure:
    found = [f for f in report.failures if f.check == check]
    assert len(found) == 1, report.render()
    return found[0]


def test_clean_file_passes(tmp_path: Path, schema: Schema) -> None:
    report = validate(_read(tmp_path, ROWS), schema)
    assert report.ok and report.failures == []
    assert report.summary() == "sales: ok (4 rows, 5 columns)"
    report.raise_for_errors()


def test_missing_and_extra_columns(tmp_path: Path, schema: Schema) -> None:
    rows = [r.rsplit(",", 1)[0] + ",x" for r in ROWS]
    df = _read(tmp_path, rows, "Store,Dept,Date,Weekly_Sales,Extra\n")
    report = validate(df, schema)
    miss, extra = _only(report, "missing_column"), _only(report, "extra_column")
    assert (miss.column, miss.severity) == ("IsHoliday", "error")
    assert (extra.column, extra.severity) == ("Extra", "warning")
    assert report.summary() == ("sales: 1 check failed: IsHoliday missing; "
                                "1 warning: Extra extra column")


def test_strings_in_a_numeric_column(tmp_path: Path, schema: Schema) -> None:
    rows = ROWS + ["3,1,2010-02-05,n/a?,FALSE", "3,2,2010-02-05,12.5,FALSE",
                   "3,3,2010-02-05,lots,FALSE"]
    report = validate(_read(tmp_path, rows), schema)
    f = _only(report, "type")
    assert (f.column, f.count, f.expected) == ("Weekly_Sales", 2, "float")
    assert f.examples == [{"row": 4, "value": "n/a?"}, {"row": 6, "value": "lots"}]
    assert [x.check for x in report.failures] == ["type"]  # the good rows still check fine


def test_float_values_in_an_int_column() -> None:
    s = Schema(name="t", columns=[Column(name="k", type="int")])
    f = _only(validate(pd.DataFrame({"k": [1.0, 2.5, None]}), s), "type")
    assert f.count == 1 and f.examples == [{"row": 1, "value": 2.5}]


def test_nan_and_negative_target(tmp_path: Path, schema: Schema) -> None:
    rows = ROWS + ["4,1,2010-02-05,,FALSE", "4,2,2010-02-05,-12.5,FALSE",
                   "4,3,2010-02-05,-0.01,FALSE", "4,4,2010-02-05,,TRUE"]
    report = validate(_read(tmp_path, rows), schema)
    nulls, low = _only(report, "nulls"), _only(report, "min")
    assert (nulls.column, nulls.count) == ("Weekly_Sales", 2)
    assert nulls.examples == [{"row": 4, "value": None}, {"row": 7, "value": None}]
    assert (low.count, low.expected) == (2, ">= 0")
    assert low.examples == [{"row": 5, "value": -12.5}, {"row": 6, "value": -0.01}]
    assert report.summary() == ("sales: 2 checks failed: Weekly_Sales nulls (2 rows), "
                                "Weekly_Sales below min 0 (2 rows)")


def test_max_and_categories() -> None:
    s = Schema(name="t", columns=[Column(name="n", type="int", max=45),
                                  Column(name="t", type="string", categories=["A", "B"])])
    df = pd.DataFrame({"n": [1, 46, 99], "t": ["A", "C", None]})
    s2 = s.model_copy(update={"columns": [s.columns[0], s.columns[1].model_copy(
        update={"nullable": True})]})
    report = validate(df, s2)
    assert _only(report, "max").examples == [{"row": 1, "value": 46}, {"row": 2, "value": 99}]
    cat = _only(report, "categories")
    assert (cat.count, cat.expected, cat.examples) == (1, "one of: A, B",
                                                       [{"row": 1, "value": "C"}])


def test_duplicated_keys(tmp_path: Path, schema: Schema) -> None:
    rows = ROWS + [ROWS[0].replace("24924.5", "1.0"), ROWS[3], ROWS[3]]
    report = validate(_read(tmp_path, rows), schema)
    f = _only(report, "duplicated")
    assert (f.column, f.count) == ("(Store, Dept, Date)", 5)
    assert f.examples[:2] == [
        {"row": 0, "value": {"Store": 1, "Dept": 1, "Date": "2010-02-05"}},
        {"row": 4, "value": {"Store": 1, "Dept": 1, "Date": "2010-02-05"}}]
    assert report.summary() == "sales: 1 check failed: (Store, Dept, Date) duplicated (5 rows)"


def test_date_in_wrong_format(tmp_path: Path, schema: Schema) -> None:
    rows = ROWS + ["5,1,05/02/2010,1.0,FALSE", "5,2,,1.0,FALSE", "5,3,2009-12-31,1.0,FALSE"]
    report = validate(_read(tmp_path, rows), schema)
    t = _only(report, "type")
    assert (t.column, t.count) == ("Date", 1)
    assert t.examples == [{"row": 4, "value": "05/02/2010"}]
    assert t.expected.startswith("date")
    nulls = _only(report, "nulls")  # the empty date is missing; the bad one is not counted
    assert (nulls.count, nulls.examples) == (1, [{"row": 5, "value": None}])
    low = _only(report, "min")
    assert low.examples == [{"row": 6, "value": "2009-12-31"}]
    assert "Date not date (1 row)" in report.summary()


def test_dates_as_text_are_parsed_when_validating(schema: Schema) -> None:
    df = pd.DataFrame({"Store": [1, 2], "Dept": [1, 1], "Date": ["2010-02-05", "5.2.2010"],
                       "Weekly_Sales": [1.0, 2.0], "IsHoliday": ["TRUE", "maybe"]})
    report = validate(df, schema)
    assert {(f.column, f.check, f.count) for f in report.failures} == {
        ("Date", "type", 1), ("IsHoliday", "type", 1)}


def test_report_dict_render_and_raise(tmp_path: Path, schema: Schema) -> None:
    rows = ROWS + ["6,1,2010-02-05,-1,FALSE", "6,1,2010-02-05,2,FALSE", "6,2,13/13/13,3,FALSE"]
    report = validate(_read(tmp_path, rows), schema)
    d = json.loads(json.dumps(report.to_dict()))
    assert d["ok"] is False and d["rows"] == 7
    assert {f["check"] for f in d["failures"]} == {"type", "min", "duplicated"}
    assert set(d["failures"][0]) == {"column", "check", "severity", "count", "expected",
                                     "examples"}
    text = report.render()
    assert text.splitlines()[0].startswith("sales: 3 checks failed")
    for word in ("Weekly_Sales", "duplicated", "13/13/13", ">= 0", "error"):
        assert word in text
    with pytest.raises(ValidationFailed, match="sales: 3 checks failed") as info:
        report.raise_for_errors()
    assert info.value.report is report


def test_examples_capped_at_five() -> None:
    s = Schema(name="t", columns=[Column(name="y", type="float", min=0)])
    f = _only(validate(pd.DataFrame({"y": [-1.0] * 12}), s), "min")
    assert f.count == 12 and len(f.examples) == 5


def test_stale_parse_errors_after_filtering_are_not_trusted(tmp_path: Path,
                                                            schema: Schema) -> None:
    rows = ROWS + ["5,1,05/02/2010,1.0,FALSE"]
    df = _read(tmp_path, rows).iloc[:4]  # attrs survive the slice; the bad row does not
    assert df.attrs["parse_errors"]["Date"]["count"] == 1
    assert validate(df, schema).ok
    reordered = _read(tmp_path, rows).iloc[::-1]
    report = validate(reordered, schema)  # row 4 now holds a good date: treated as a null
    assert [(f.check, f.count) for f in report.failures] == [("nulls", 1)]
