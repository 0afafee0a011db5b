"""cd4ml.data.schema: inference, YAML round trip, clear errors for bad edits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cd4ml.data.schema import Column, Schema, infer_schema, load_schema, save_schema
from cd4ml.errors import ConfigError, DataError


@pytest.fixture()
def frame() -> pd.DataFrame:
    return pd.DataFrame({
        "Store": [1, 1, 2, 2],
        "Date": pd.to_datetime(["2010-02-05", "2010-02-12", "2010-02-05", "2010-02-12"]),
        "Weekly_Sales": [10.0, -2.5, np.nan, 4.0],
        "Size": [5.0, 5.0, 7.0, 7.0],
        "Type": ["A", "A", "B", None],
        "IsHoliday": [False, True, False, True],
        "Code": [f"c{i}" for i in range(4)],
    })


def test_infer_types_nulls_min_categories_keys(frame: pd.DataFrame) -> None:
    s = infer_schema(frame, name="sales", keys=["Store", "Date"])
    cols = {c.name: c for c in s.columns}
    assert [c.type for c in s.columns] == ["int", "date", "float", "float", "string", "bool",
                                           "string"]
    assert cols["Store"].min == 0 and not cols["Store"].nullable
    assert cols["Weekly_Sales"].min is None and cols["Weekly_Sales"].nullable  # a negative
    assert cols["Size"].min == 0 and cols["Size"].max is None
    assert cols["Type"].categories == ["A", "B"] and cols["Type"].nullable
    assert cols["IsHoliday"].categories is None and cols["Date"].min is None
    assert s.unique_keys == ["Store", "Date"]


def test_infer_categories_limit_and_non_unique_keys() -> None:
    df = pd.DataFrame({"few": [f"v{i % 50}" for i in range(200)],
                       "many": [f"v{i % 51}" for i in range(200)],
                       "k": [i % 100 for i in range(200)]})
    s = infer_schema(df, name="t", keys=["k"])
    assert len(s.column("few").categories or []) == 50
    assert s.column("many").categories is None
    assert s.unique_keys is None  # k repeats, so no key check is proposed


def test_infer_missing_key_column(frame: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="key column 'Dept' is not in the data"):
        infer_schema(frame, name="sales", keys=["Store", "Dept"])


def test_infer_ignores_recorded_parse_errors_for_nullable() -> None:
    df = pd.DataFrame({"d": pd.to_datetime(["2010-02-05", None])})
    df.attrs["parse_errors"] = {"d": {"count": 1, "examples": [{"row": 1, "value": "x"}]}}
    assert infer_schema(df, name="t").column("d").nullable is False


def test_yaml_round_trip_has_commented_header(tmp_path: Path, frame: pd.DataFrame) -> None:
    s = infer_schema(frame, name="sales", keys=["Store", "Date"])
    path = tmp_path / "schema" / "sales.yaml"
    save_schema(s, path)
    text = path.read_text()
    assert text.startswith("# Data schema for source 'sales'")
    for word in ("type", "nullable", "min, max", "categories", "unique_keys"):
        assert f"#   {word}" in text or f"#     {word}" in text, word
    assert "max:" not in text.split("\nname:")[1]  # no None values written
    assert load_schema(path) == s
    assert yaml.safe_load(text)["unique_keys"] == ["Store", "Date"]


def test_hand_edits_are_read(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("name: s\ncolumns:\n"
                    "- {name: d, type: date, min: 2010-01-01, max: 2012-12-31}\n"
                    "- {name: k, type: string, categories: [1, 2]}\n"
                    "- {name: y, type: float, min: 0, max: 1e6, nullable: true}\n")
    s = load_schema(path)
    assert s.column("d").min == "2010-01-01" and s.column("k").categories == ["1", "2"]
    assert s.column("y").max == 1e6


@pytest.mark.parametrize("body,match", [
    ("name: s\ncolumns:\n- {name: y, type: decimal}\n",
     r"s.yaml: columns\[y\].type = 'decimal': Input should be 'int', 'float'"),
    ("name: s\ncolumns:\n- {name: y, type: float, nullable: maybe}\n",
     r"columns\[y\].nullable = 'maybe': Input should be a valid boolean"),
    ("name: s\ncolumns:\n- {name: y, type: float, mn: 0}\n",
     r"columns\[y\].mn = 0: unknown key; allowed: name, type, nullable, min, max, categories"),
    ("name: s\ncolumns:\n- {name: y, type: float, min: 5, max: 1}\n",
     r"s.yaml: columns\[y\]: min 5 > max 1"),
    ("name: s\ncolumns:\n- {name: y, type: float, min: low}\n",
     r"columns\[y\]: min = 'low': must be a number for a float column"),
    ("name: s\ncolumns:\n- {name: y, type: date, min: someday}\n",
     r"columns\[y\]: min = 'someday': must be a date"),
    ("name: s\ncolumns:\n- {name: y, type: float, categories: [a]}\n",
     r"only string and int columns take categories"),
    ("name: s\ncolumns:\n- {type: float}\n", r"columns\[0\].name = None: required key"),
    ("name: s\ncolumns:\n- {name: y, type: float}\nunique_keys: [z]\n",
     r"unique key 'z' is not a column"),
    ("name: s\ncolumns: [\n", r"line \d+ = None: not valid YAML"),
    ("- just a list\n", r"\(top level\) = 'list': the file must hold a mapping"),
])
def test_bad_edits_name_file_key_and_value(tmp_path: Path, body: str, match: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=match) as info:
        load_schema(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_missing_schema_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="schema file not found"):
        load_schema(tmp_path / "none.yaml")


def test_schema_model_rejects_duplicate_columns() -> None:
    with pytest.raises(ValueError, match="column names repeat"):
        Schema(name="s", columns=[Column(name="a", type="int"), Column(name="a", type="int")])
