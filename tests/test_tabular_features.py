"""Tabular features: the signature from the schema, one transform fitted on the training
rows, and the same kernels for frames (training, batch), request records and matrices.
Checked on real ACS rows (PUMS codes declared in the schema) and scikit-learn's wine."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from tabular_fixtures import INPUTS, PUMS, acs, acs_schema, wine  # noqa: F401

from cd4ml.config import ColumnPolicy, InputsConfig
from cd4ml.data.schema import load_schema, save_schema
from cd4ml.data.validate import validate
from cd4ml.errors import ConfigError, DataError, RequestError
from cd4ml.features.tabular import TabularSpec, TabularTransform, tabular_spec


def _fit(df: pd.DataFrame, inputs: InputsConfig | None = None, schema=None,  # type: ignore[no-untyped-def]
         ) -> TabularTransform:
    train = df[df.year == 2015]
    spec = tabular_spec([schema or acs_schema()], train, inputs or InputsConfig(drop=["year"]),
                        target="employed", id="id")
    return TabularTransform.fit(spec, train)


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as a JSON request carries them: AGEP a float, the codes ints."""
    return json.loads(frame[INPUTS].to_json(orient="records"))


@pytest.fixture(scope="module")
def t(acs: pd.DataFrame) -> TabularTransform:  # noqa: F811
    return _fit(acs)


@pytest.fixture(scope="module")
def rows2016(acs: pd.DataFrame) -> pd.DataFrame:  # noqa: F811
    return acs[acs.year == 2016].reset_index(drop=True)


# -- schema: declared int codes ---------------------------------------------------------
def test_declared_int_codes_survive_the_schema_file_and_validation_checks_them(
        acs: pd.DataFrame, tmp_path) -> None:  # noqa: F811
    save_schema(acs_schema(), tmp_path / "acs.yaml")
    schema = load_schema(tmp_path / "acs.yaml")
    assert schema.column("RAC1P").categories == list(range(1, 10))
    assert validate(acs, schema).ok
    bad = acs.head(100).copy()
    bad.loc[[3, 7], "SCHL"] = 99  # not a PUMS code
    bad["AGEP"] = bad["AGEP"].astype(float)
    bad.loc[5, "AGEP"] = -5.0
    report = validate(bad, schema)
    fails = {(f.column, f.check): f for f in report.failures}
    assert fails[("SCHL", "categories")].count == 2
    assert [e["row"] for e in fails[("SCHL", "categories")].examples] == [3, 7]
    assert fails[("AGEP", "min")].count == 1


def test_int_categories_in_a_schema_file_are_whole_numbers(tmp_path) -> None:
    p = tmp_path / "s.yaml"
    p.write_text("name: s\ncolumns:\n- {name: SEX, type: int, categories: [1, '2', 3.0]}\n")
    assert load_schema(p).column("SEX").categories == [1, 2, 3]
    p.write_text("name: s\ncolumns:\n- {name: SEX, type: int, categories: [1, 1.5, x]}\n")
    with pytest.raises(ConfigError, match=r"columns\[SEX\]: categories = \[1, 1.5, 'x'\]: int "
                                          r"column needs whole numbers"):
        load_schema(p)


# -- the signature ------------------------------------------------------------------------
def test_signature_comes_from_the_schema(t: TabularTransform) -> None:
    spec = t.spec
    assert spec.names == INPUTS  # table order, without id, target and year
    assert spec.classes == [0, 1] and spec.id == "id" and spec.target == "employed"
    age = spec.inputs[0]
    assert (age.type, age.categorical, age.min, age.max) == ("float", False, 0, 99)
    assert all(c.categorical and c.type == "int" for c in spec.inputs[1:])
    assert t.categorical == {c: len(PUMS[c]) for c in INPUTS[1:]}
    sig = {d["name"]: d for d in t.signature_inputs()}
    assert sig["AGEP"] == {"name": "AGEP", "type": "number", "categorical": False,
                           "minimum": 0, "maximum": 99, "nullable": False,
                           "unknown": "refuse", "missing": "refuse"}
    assert sig["RAC1P"]["categories"] == list(range(1, 10))
    assert sig["RAC1P"]["type"] == "integer"


def test_declared_order_gives_the_codes(acs: pd.DataFrame) -> None:  # noqa: F811
    schema = acs_schema()
    schema.column("SEX").categories = [2, 1]  # declared order, not sorted
    tr = _fit(acs, schema=schema)
    X = tr.matrix(acs.head(500))
    ref = pd.Categorical(acs.head(500)["SEX"], categories=[2, 1]).codes  # pandas' coding
    assert np.array_equal(X[:, INPUTS.index("SEX")], ref.astype(np.float32))


def test_learned_codes_are_the_sorted_training_values(acs: pd.DataFrame) -> None:  # noqa: F811
    from sklearn.preprocessing import OrdinalEncoder

    schema = acs_schema()
    schema.column("RELP").categories = None
    tr = _fit(acs, InputsConfig(drop=["year"], categorical=["RELP"]), schema=schema)
    train = acs[acs.year == 2015]
    enc = OrdinalEncoder().fit(train[["RELP"]])  # sorted categories, as the reference
    assert tr.codes["RELP"] == enc.categories_[0].tolist()
    X = tr.matrix(acs[acs.year == 2016])
    ref = enc.transform(acs[acs.year == 2016][["RELP"]])[:, 0]
    assert np.array_equal(X[:, INPUTS.index("RELP")], ref.astype(np.float32))


# -- one code path ------------------------------------------------------------------------
def test_records_frame_and_matrix_give_identical_vectors(t: TabularTransform,
                                                         rows2016: pd.DataFrame) -> None:
    rows = rows2016.head(1000)
    X_frame = t.matrix(rows)  # training and batch scoring path (extra columns ignored)
    recs = _records(rows)
    X_plain = t.encode_records(recs)  # the per-request shortcut
    X_checked = t.encoder.records(recs).astype(np.float32)  # the field-by-field path
    X_matrix = t.encode_matrix(rows[INPUTS].to_numpy(np.float64))
    X_small = np.vstack([t.encode_matrix(rows[INPUTS].to_numpy()[i:i + 1]) for i in range(50)])
    X_one = np.vstack([t.encode_records([r]) for r in recs[:50]])
    for X in (X_plain, X_checked, X_matrix):
        assert X.dtype == np.float32 and np.array_equal(X, X_frame)
    assert np.array_equal(X_small, X_frame[:50]) and np.array_equal(X_one, X_frame[:50])
    # the codes are the positions of the values in the declared categories
    for j, c in enumerate(INPUTS[1:], start=1):
        ref = pd.Categorical(rows[c], categories=PUMS[c]).codes
        assert np.array_equal(X_frame[:, j], ref.astype(np.float32)), c
    assert np.array_equal(X_frame[:, 0], rows["AGEP"].to_numpy(np.float32))
    # numpy scalars (records from a DataFrame) take the checked path, same answer
    np_recs = rows[INPUTS].head(20).to_dict("records")
    assert np.array_equal(t.encode_records(np_recs), X_frame[:20])


def test_the_transform_round_trips_through_json(t: TabularTransform,
                                                rows2016: pd.DataFrame) -> None:
    spec = TabularSpec.from_dict(json.loads(json.dumps(t.spec.to_dict())))
    back = TabularTransform.from_dict(json.loads(json.dumps(t.to_dict())), spec)
    assert spec == t.spec
    assert np.array_equal(back.matrix(rows2016), t.matrix(rows2016))


# -- policies -----------------------------------------------------------------------------
def test_unknown_policy_maps_to_the_unknown_code_refuse_refuses(
        acs: pd.DataFrame, rows2016: pd.DataFrame, t: TabularTransform) -> None:  # noqa: F811
    schema = acs_schema()
    schema.column("ANC").categories = None  # learned from training: 1..4
    tr = _fit(acs, InputsConfig(drop=["year"], categorical=["ANC"],
                                columns={"ANC": ColumnPolicy(unknown="unknown")}), schema)
    assert tr.codes["ANC"] == [1, 2, 3, 4] and tr.categorical["ANC"] == 5
    rec = _records(rows2016.head(1))[0]
    X = tr.encode_records([{**rec, "ANC": 7}, {**rec, "ANC": 3}])
    assert X[:, INPUTS.index("ANC")].tolist() == [4.0, 2.0]  # the unknown code is n
    frame = rows2016.head(3).assign(ANC=[7, 3, 8])
    assert tr.matrix(frame)[:, INPUTS.index("ANC")].tolist() == [4.0, 2.0, 4.0]
    with pytest.raises(RequestError) as err:  # the default: refuse
        t.encode_records([{**rec, "ANC": 7}])
    assert err.value.errors == [{"loc": "rows[0].ANC", "field": "ANC", "value": 7,
                                 "problem": "not one of the declared categories: 1, 2, 3, 4",
                                 "reason": "unknown_category"}]


def test_impute_fills_the_training_median_and_most_frequent_code(
        acs: pd.DataFrame, rows2016: pd.DataFrame) -> None:  # noqa: F811
    tr = _fit(acs, InputsConfig(drop=["year"], columns={
        "AGEP": ColumnPolicy(missing="impute"), "MIL": ColumnPolicy(missing="impute")}))
    train = acs[acs.year == 2015]
    assert tr.fills["AGEP"] == float(np.median(train["AGEP"]))
    mode = train["MIL"].value_counts().idxmax()
    assert tr.fills["MIL"] == PUMS["MIL"].index(mode)
    rec = _records(rows2016.head(1))[0]
    X = tr.encode_records([{**rec, "AGEP": None, "MIL": None}])
    assert X[0, 0] == np.float32(train["AGEP"].median())
    assert X[0, INPUTS.index("MIL")] == PUMS["MIL"].index(mode)
    frame = rows2016.head(2).astype({"AGEP": float})
    frame.loc[0, "AGEP"] = np.nan
    assert tr.matrix(frame)[0, 0] == np.float32(train["AGEP"].median())
    M = frame[INPUTS].to_numpy(float)  # NaN in a matrix is a missing value
    assert tr.encode_matrix(M)[0, 0] == np.float32(train["AGEP"].median())


def test_a_missing_training_value_in_a_refuse_column_is_one_line(acs: pd.DataFrame) -> None:  # noqa: F811
    train = acs[acs.year == 2015].copy()
    train["AGEP"] = train["AGEP"].astype(float)
    train.iloc[[4, 9, 11], train.columns.get_loc("AGEP")] = np.nan
    spec = tabular_spec([acs_schema()], train, InputsConfig(drop=["year"]), target="employed",
                        id="id")
    with pytest.raises(DataError) as err:
        TabularTransform.fit(spec, train)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg == ("training rows: AGEP has 3 missing value(s) (first at rows[4].AGEP); set "
                   "inputs.columns.AGEP.missing: impute, or fill them")


# -- bad requests: every bad field of every row --------------------------------------------
def test_age_minus_five_names_field_value_and_bound(t: TabularTransform,
                                                    rows2016: pd.DataFrame) -> None:
    rec = _records(rows2016.head(1))[0]
    with pytest.raises(RequestError) as err:
        t.encode_records([{**rec, "AGEP": -5}])
    assert str(err.value) == "rows[0].AGEP = -5: below the schema's minimum 0"
    assert err.value.errors[0]["reason"] == "below_min" and err.value.status == 422
    with pytest.raises(RequestError, match=r"rows\[0\].AGEP = 120: above the schema's maximum 99"):
        t.encode_records([{**rec, "AGEP": 120}])
    with pytest.raises(RequestError) as err:  # beyond float64: still a range error
        t.encode_records([{**rec, "AGEP": -10 ** 400, "SEX": 10 ** 400}])
    assert [e["reason"] for e in err.value.errors] == ["below_min", "unknown_category"]


def test_every_bad_field_of_every_row_is_listed(t: TabularTransform,
                                                rows2016: pd.DataFrame) -> None:
    good = _records(rows2016.head(1))[0]
    no_sex = {k: v for k, v in good.items() if k != "SEX"}
    bad = [
        good,
        {**good, "AGEP": "forty", "SCHL": True},  # string and bool where numbers belong
        {**no_sex, "agep": 3, "extra": 1},  # a missing column, a wrong-case and an extra one
        {**good, "AGEP": math.nan, "MAR": math.inf, "RAC1P": 10},  # NaN, inf, unseen code
        {**good, "DIS": [1], "ANC": None},  # wrong JSON type, a null in a refuse column
        "not an object",
    ]
    with pytest.raises(RequestError) as err:
        t.encode_records(bad)
    got = [(e["loc"], e["value"], e["reason"]) for e in err.value.errors]
    assert got == [
        ("rows[1].AGEP", "forty", "wrong_type"), ("rows[1].SCHL", True, "wrong_type"),
        ("rows[2].SEX", None, "missing_field"), ("rows[2].agep", 3, "unknown_field"),
        ("rows[2].extra", 1, "unknown_field"),
        ("rows[3].AGEP", "nan", "not_finite"), ("rows[3].MAR", "inf", "not_finite"),
        ("rows[3].RAC1P", 10, "unknown_category"),
        ("rows[4].DIS", "[1]", "wrong_type"), ("rows[4].ANC", None, "missing_value"),
        ("rows[5]", "not an object", "wrong_type"),
    ]
    assert str(err.value) == "rows[1].AGEP = 'forty': expected a number (and 10 more)"
    hints = {e["loc"]: e["problem"] for e in err.value.errors}
    assert "did you mean 'AGEP'? (names are case-sensitive)" in hints["rows[2].agep"]
    assert hints["rows[3].RAC1P"].startswith("not one of the declared categories: 1, 2")
    assert all(set(e) == {"loc", "field", "value", "problem", "reason"}
               for e in err.value.errors)
    json.dumps(err.value.errors)  # JSON-safe values


def test_bad_matrix_inputs(t: TabularTransform, rows2016: pd.DataFrame) -> None:
    M = rows2016[INPUTS].head(3).to_numpy(float)
    with pytest.raises(RequestError, match=r"shape \[3, 15\]: expected shape \(n, 16\)"):
        t.encode_matrix(M[:, :15])
    M[1, 0], M[2, INPUTS.index("SEX")] = -5, 3
    with pytest.raises(RequestError) as err:
        t.encode_matrix(M)
    assert [(e["loc"], e["value"], e["reason"]) for e in err.value.errors] == [
        ("rows[1].AGEP", -5.0, "below_min"), ("rows[2].SEX", 3.0, "unknown_category")]
    M[1, 0], M[2, INPUTS.index("SEX")] = np.nan, 1
    with pytest.raises(RequestError, match=r"rows\[1\].AGEP: missing value"):
        t.encode_matrix(M)


def test_a_frame_for_batch_scoring_is_checked_the_same_way(t: TabularTransform,
                                                           rows2016: pd.DataFrame) -> None:
    frame = rows2016.head(5).astype({"AGEP": object})
    frame.loc[1, "AGEP"] = "abc"
    frame.loc[3, "AGEP"] = "41"  # text that is a number (a CSV cell) is the number
    with pytest.raises(RequestError) as err:
        t.matrix(frame)
    assert [e["loc"] for e in err.value.errors] == ["rows[1].AGEP"]
    frame.loc[1, "AGEP"] = 30
    assert t.matrix(frame)[3, 0] == 41.0
    with pytest.raises(RequestError, match="columns.SEX: column required"):
        t.matrix(frame.drop(columns="SEX"))
    with pytest.raises(DataError, match="holdout rows: AGEP has 1 bad value"):
        t.matrix(frame.assign(AGEP=[1, 2, 3, 4, -1]), where="holdout rows")
    with pytest.raises(RequestError, match="columns.id: unknown field"):
        t.encode_frame(frame, extra="refuse")


# -- bad training data and config ---------------------------------------------------------
def test_bad_targets_and_config_are_one_line_errors(acs: pd.DataFrame) -> None:  # noqa: F811
    train = acs[acs.year == 2015].head(2000).copy()
    inputs = InputsConfig(drop=["year"])
    with pytest.raises(DataError, match=r"target employed: values \[0\] \(.* rows\) are not in "
                                        r"data.classes \[1, 2\]"):
        tabular_spec([acs_schema()], train, inputs, "employed", "id", classes=[1, 2])
    nan = train.astype({"employed": float})
    nan.iloc[[2, 5], nan.columns.get_loc("employed")] = np.nan
    with pytest.raises(DataError, match=r"target employed: 2 missing value\(s\) \(first at row 2\)"):
        tabular_spec([acs_schema()], nan, inputs, "employed", "id")
    n_ages = train["AGEP"].nunique()
    with pytest.raises(DataError, match=f"target AGEP has {n_ages} distinct values; did you "
                                        f"mean regression?"):
        tabular_spec([acs_schema()], train, inputs, "AGEP", "id")
    with pytest.raises(ConfigError, match=r"inputs.columns.AGEP.unknown = 'unknown': AGEP is "
                                          r"not categorical"):
        tabular_spec([acs_schema()], train, InputsConfig(
            drop=["year"], columns={"AGEP": ColumnPolicy(unknown="unknown")}), "employed", "id")
    with pytest.raises(ConfigError, match=r"inputs.drop = 'yeer': not a column"):
        tabular_spec([acs_schema()], train, InputsConfig(drop=["yeer"]), "employed", "id")
    with pytest.raises(ConfigError, match=r"inputs.categorical = 'employed': not an input: it "
                                          r"is the target"):
        tabular_spec([acs_schema()], train, InputsConfig(drop=["year"], categorical=["employed"]),
                     "employed", "id")
    spec = tabular_spec([acs_schema()], train, inputs, "employed", "id")
    assert spec.encode_target(train["employed"]).tolist() == train["employed"].tolist()


# -- wine: multiclass, float inputs, no categories ----------------------------------------
def test_wine_float_inputs_and_three_classes() -> None:
    df, schema = wine()
    spec = tabular_spec([schema], df, InputsConfig(), target="target", task="classification")
    assert spec.classes == [0, 1, 2] and len(spec.names) == 13
    assert not any(c.categorical for c in spec.inputs)
    tr = TabularTransform.fit(spec, df)
    X = tr.matrix(df)
    assert np.array_equal(X, df[spec.names].to_numpy(np.float32))  # no coding for floats
    recs = json.loads(df[spec.names].to_json(orient="records", double_precision=15))
    assert np.array_equal(tr.encode_records(recs), X)
    assert np.array_equal(tr.encode_matrix(df[spec.names].to_numpy()), X)
    with pytest.raises(RequestError, match=r"rows\[0\].alcohol = -1.0: below the schema's "
                                           r"minimum 0"):
        tr.encode_records([{**recs[0], "alcohol": -1.0}])
    assert spec.encode_target(df["target"]).tolist() == df["target"].tolist()


def test_string_and_bool_inputs_from_requests_and_frames() -> None:
    from cd4ml.data.schema import Column, Schema

    schema = Schema(name="s", columns=[Column(name="plan", type="string", categories=["1", "2b"]),
                                       Column(name="member", type="bool"),
                                       Column(name="y", type="int")])
    train = pd.DataFrame({"plan": ["1", "2b", "1"], "member": [True, False, True], "y": [0, 1, 0]})
    tr = TabularTransform.fit(tabular_spec([schema], train, InputsConfig(), "y"), train)
    assert tr.codes == {"plan": ["1", "2b"], "member": [False, True]}
    X = tr.encode_records([{"plan": "2b", "member": True}])
    assert X.tolist() == [[1.0, 1.0]]
    # a reader that took the codes for numbers (NaN made them float): same codes
    read = pd.DataFrame({"plan": [1.0, np.nan], "member": [True, False]})
    with pytest.raises(RequestError, match=r"rows\[1\].plan: missing value"):
        tr.matrix(read)
    assert tr.matrix(read.head(1)).tolist() == [[0.0, 1.0]]
    with pytest.raises(RequestError) as err:
        tr.encode_records([{"plan": 1, "member": 1}])
    assert [(e["field"], e["problem"]) for e in err.value.errors] == [
        ("plan", "expected a string"), ("member", "expected true or false")]
    with pytest.raises(RequestError, match="cannot carry the string input"):
        tr.encode_matrix(np.zeros((1, 2)))


def test_numeric_codes_by_binary_search_equal_the_lookup_of_each_value(acs) -> None:  # noqa: F811
    """A coded column of numbers (the PUMS codes) looks a large array up by binary search;
    every value gets the code, unknown, missing or not-finite mark the per-value lookup
    gives, on ACS's own codes and on values around them."""
    from cd4ml.features.tabular_kernels import SMALL, CodeTable

    rng = np.random.default_rng(0)
    for col in ("SCHL", "RAC1P", "RELP"):
        cats = sorted(int(v) for v in acs[col].unique())
        for unknown, fill in ((None, None), (len(cats), 3.0)):
            t = CodeTable(cats, unknown, fill)
            assert t._sorted is not None
            v = np.concatenate([acs[col].to_numpy(np.float64)[:500],
                                [np.nan, np.inf, -np.inf, max(cats) + 1.0, -1.0, 1.5, 1e12],
                                rng.normal(10, 10, 200)])
            assert len(v) > SMALL
            codes, reasons = t.encode(v)
            by_value = [t._code(x) for x in v.tolist()]
            small = [t.encode(v[i:i + SMALL]) for i in range(0, len(v), SMALL)]
            assert np.array_equal(codes, np.concatenate([c for c, _ in small]), equal_nan=True)
            assert np.array_equal(
                reasons if reasons is not None else np.zeros(len(v), np.int8),
                np.concatenate([r if r is not None else np.zeros(len(c), np.int8)
                                for c, r in small]))
            known = np.asarray(by_value) >= 0
            assert np.array_equal(codes[known], np.asarray(by_value, float)[known])
    # bools and strings keep the lookup
    assert CodeTable([True, False], None, None)._sorted is None
    assert CodeTable(["a", "b"], None, None)._sorted is None


def test_one_row_is_checked_as_a_block_of_rows_is() -> None:
    """A single request row takes plain comparisons instead of array operations: the same
    verdict as the vectorised check, at the bounds, between them, for NaN and infinities."""
    from cd4ml.features.tabular_kernels import F32_MAX, NumericBlock

    b = NumericBlock([0.0, -F32_MAX, 1.5], [99.0, F32_MAX, 2.5], [False, True, False],
                     [None, None, None])
    specials = [0.0, -0.0, 99.0, 99.0000001, -1e-300, 1.5, 2.5, 2.0, 7.0, 7.5, F32_MAX,
                -F32_MAX, 1e39, np.nan, np.inf, -np.inf]
    rng = np.random.default_rng(1)
    rows = rng.choice(specials, size=(3000, 3))
    verdicts = {True: 0, False: 0}
    for row in rows:
        one = b.clean(row[None, :])
        assert one == b.clean(np.vstack([row, row])), row
        verdicts[one] += 1
    assert min(verdicts.values()) > 50  # both verdicts were exercised
