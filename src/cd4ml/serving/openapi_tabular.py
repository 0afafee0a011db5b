"""The OpenAPI document of a tabular model, from its signature.

Each input column becomes a schema: its categories as an enum (unless unseen ones map
to "unknown"), its range as minimum and maximum (the float32 range where the schema
gives none), null allowed where a missing value is imputed. From them: the native
rows, MLflow's four JSON shapes and its CSV, the v2 request (one tensor per column, or
one 2-D tensor of every input in signature order) and each answer: a classifier's
label (an enum of the classes) and probabilities, or a regressor's number. Feedback is
by request id only (keys and a date are a forecast's). Paths and refusals are the
forecast document's (:func:`cd4ml.serving.openapi.complete_spec`).
"""

from __future__ import annotations

import re
from typing import Any

from cd4ml.config import ServingConfig
from cd4ml.features.tabular_kernels import F32_MAX
from cd4ml.serving.feedback import MAX_VALUE
from cd4ml.serving.openapi import (_V2_NUMERIC, _ref, complete_spec, predict_components,
                                   shared_components)

__all__ = ["tabular_api_spec", "column_schema"]

_TEXTS = {
    "predict_422": "a row the model cannot answer: a field missing, unknown or of the "
                   "wrong type, a category it does not know, a number out of range",
    "feedback_422": "an item the log cannot take: an actual that is not one of the "
                    "model's classes (or not a finite number), keys instead of a request id",
    "form_200": "the form, with the model's answer when asked (a field left out takes "
                "the form's default)",
    "form_422": "the form and why the model cannot answer"}


def column_schema(col: dict[str, Any], *, null: bool = True) -> dict[str, Any]:
    """The JSON schema of one signature input (``null``: allow null where imputed)."""
    kind = col["type"]
    cats = col.get("categories")
    if kind == "boolean":
        sch: dict[str, Any] = {"type": "boolean"}
    elif cats and col.get("unknown") != "unknown":
        sch = {"type": kind, "enum": list(cats)}
    elif kind in ("integer", "number"):
        sch = {"type": kind,
               "minimum": col["minimum"] if col.get("minimum") is not None else -F32_MAX,
               "maximum": col["maximum"] if col.get("maximum") is not None else F32_MAX}
    else:
        sch = {"type": "string"}
    if null and col.get("missing") == "impute":
        return {"anyOf": [sch, {"type": "null"}]}
    return sch


def _text(v: Any) -> str:
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def _csv_values(col: dict[str, Any]) -> list[str]:
    """Cells a CSV body may hold for a column (a sample of a wide numeric range)."""
    cats = col.get("categories")
    if col["type"] == "boolean":
        vals = ["true", "false"]
    elif cats and col.get("unknown") != "unknown":
        vals = [_text(v) for v in cats]
    elif col["type"] in ("integer", "number"):
        lo = col.get("minimum") if col.get("minimum") is not None else -1000
        hi = col.get("maximum") if col.get("maximum") is not None else 1000
        a, b = int(-(-lo // 1)), int(hi // 1)  # the whole numbers within the range
        vals = [str(v) for v in range(a, b + 1)] if 0 <= b - a <= 100 else \
            [str(a), str((a + b) // 2), str(b)] if b > a else \
            [repr(float(lo)), repr(float(hi)), repr((lo + hi) / 2)]
    else:
        vals = ["a", "b"]
    return vals + ([""] if col.get("missing") == "impute" else [])


def _csv_pattern(inputs: list[dict[str, Any]]) -> str:
    """CSV bodies of 1 to 20 rows of the values :func:`_csv_values` lists (a number
    column's whole numbers also as ``30.0``)."""
    def alt(c: dict[str, Any], v: str) -> str:
        whole = c["type"] == "number" and not c.get("categories") and v.lstrip("-").isdigit()
        return re.escape(v) + (r"(\.0)?" if whole else "")

    alts = ["(" + "|".join(alt(c, v) for v in _csv_values(c)) + ")" for c in inputs]
    header = ",".join(re.escape(c["name"]) for c in inputs)
    return "^" + header + r"\n(" + ",".join(alts) + r"\n){1,20}$"


def _tensor(name: Any, datatypes: list[str], item: dict[str, Any], size: int,
            shape: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "object", "required": ["name", "shape", "datatype", "data"],
            "additionalProperties": False, "properties": {
                "name": name,
                "shape": {"type": "array", "prefixItems": shape, "minItems": len(shape),
                          "maxItems": len(shape),
                          "description": "one row in this document; any shape whose size "
                                         "is the number of values"},
                "datatype": {"enum": datatypes},
                "parameters": {"type": ["object", "null"],
                               "properties": {"binary_data_size": False},
                               "description": "binary_data_size: with the binary extension "
                                              "only (null: none)"},
                "data": {"type": "array", **item, "minItems": size, "maxItems": size}}}


def _v2_request(c: Any, fs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    outs = [o["name"] for o in c.v2_outputs_meta]

    def outputs(names: list[str]) -> dict[str, Any]:
        return {"type": "array", "items": {
            "type": "object", "required": ["name"], "additionalProperties": False,
            "properties": {"name": {"enum": names}, "parameters": {
                "type": ["object", "null"],
                "properties": {"binary_data": {"type": "boolean"}}}}}}

    def datatypes(col: dict[str, Any]) -> list[str]:
        return ["BYTES"] if col["type"] == "string" else ["BOOL"] \
            if col["type"] == "boolean" else _V2_NUMERIC

    per_column = [_tensor({"const": f}, datatypes(c.inputs[f]), {"items": sch}, 1,
                          [{"const": 1}]) for f, sch in fs.items()]
    # parameters may be null (the protocol's decoder takes null as none)
    params = {"type": ["object", "null"],
              "properties": {"binary_data_output": {"type": "boolean"}}}
    branches = [{"type": "object", "required": ["inputs"], "additionalProperties": False,
                 "properties": {"id": {"type": "string"}, "parameters": params,
                                "inputs": {"type": "array", "prefixItems": per_column,
                                           "minItems": len(fs), "maxItems": len(fs)},
                                "outputs": outputs(outs)}}]
    cols = list(c.inputs.values())
    if c.matrix and all(col["type"] != "string" for col in cols):
        k = len(cols)
        matrix = _tensor({"type": "string", "not": {"enum": list(fs)}},
                         ["FP32", "FP64"], {"prefixItems": [column_schema(col, null=False)
                                                            for col in cols]},
                         k, [{"const": 1}, {"const": k}])
        branches.append({"type": "object", "required": ["inputs"],
                         "additionalProperties": False,
                         "description": "one 2-D tensor of every input in signature order "
                                        "(MLServer's LightGBM runtime)",
                         "properties": {"id": {"type": "string"}, "parameters": params,
                                        "inputs": {"type": "array", "prefixItems": [matrix],
                                                   "minItems": 1, "maxItems": 1},
                                        "outputs": outputs(["predict"])}})
    return {"oneOf": branches}


def _components(c: Any, s: ServingConfig) -> dict[str, Any]:
    m = c.model
    fs = {name: column_schema(col) for name, col in c.inputs.items()}
    names, n = list(fs), s.max_batch_rows
    row = {"type": "object", "required": names, "additionalProperties": False,
           "properties": fs}
    rows = {"type": "array", "items": _ref("TabularRow"), "minItems": 1, "maxItems": n}
    column = {f: {"anyOf": [sch, {"type": "array", "items": sch, "minItems": 1,
                                  "maxItems": 1}]} for f, sch in fs.items()}
    columns = {"type": "object", "required": names, "additionalProperties": False,
               "properties": column,
               "description": "columns of equally many values (declared here for one row)"}
    finite = {"type": "number", "minimum": -MAX_VALUE, "maximum": MAX_VALUE}
    shapes = c.answers.schemas(finite)
    answer, label, actual = shapes["answer"], shapes["prediction"], shapes["actual"]
    by_id = {"type": "object", "required": ["request_id"], "additionalProperties": False,
             "properties": {"request_id": {"type": "string", "minLength": 1,
                                           "maxLength": 128,
                                           "pattern": "^[A-Za-z0-9._:-]+$"},
                            "row": {"type": "integer", "minimum": 0},
                            "actual": actual, "reward": finite,
                            "actuals": {"type": "array", "items": actual, "minItems": 1}},
             "anyOf": [{"required": ["actual"]}, {"required": ["actuals"]},
                       {"required": ["reward"]}]}
    items = {"type": "array", "items": _ref("FeedbackItem"), "minItems": 1, "maxItems": n}
    return {
        **predict_components("TabularRow", row, rows, answer, m.name, m.version),
        "FeedbackItem": by_id,
        **shared_components(names, list(fs.values()), rows, columns, items, n),
        "MlflowResponse": {"type": "object", "required": ["predictions"], "properties": {
            "predictions": {"type": "array", "items": label}}},
        "MlflowError": {"type": "object", "required": ["error_code", "message"],
                        "properties": {"error_code": {"type": "string"},
                                       "message": {"type": "string"}}},
        "InferenceRequest": _v2_request(c, fs),
        "InferenceResponse": {
            "type": "object", "required": ["model_name", "model_version", "outputs"],
            "properties": {"model_name": {"const": m.name},
                           "model_version": {"const": str(m.version)},
                           "id": {"type": "string"},
                           "outputs": {"type": "array", "items": {
                               "type": "object", "required": ["name", "datatype", "shape"],
                               "properties": {"name": {"enum": [
                                   *(o["name"] for o in c.v2_outputs_meta), "predict"]},
                                   "datatype": {"type": "string"},
                                   "shape": {"type": "array"},
                                   "parameters": {"type": "object"},
                                   "data": {"type": "array"}}}}}},
        "V2Error": {"type": "object", "required": ["error"],
                    "properties": {"error": {"type": "string"}}},
        "ModelMetadata": {"type": "object", "required": ["name", "versions", "inputs",
                                                         "outputs"],
                          "properties": {"name": {"const": m.name},
                                         "versions": {"type": "array"},
                                         "inputs": {"type": "array"},
                                         "outputs": {"type": "array"}}},
    }


def tabular_api_spec(base: dict[str, Any], c: Any, s: ServingConfig, *,
                     feedback_token: bool = False, log: bool = True) -> dict[str, Any]:
    """``base`` (FastAPI's document of the routes) completed for the model of ``c`` (a
    :class:`~cd4ml.serving.contracts.TabularContract`)."""
    inputs = list(c.inputs.values())
    form = {name: column_schema(col, null=False) for name, col in c.inputs.items()}
    return complete_spec(base, c.model.name, c.model.version, _components(c, s),
                         _csv_pattern(inputs), form, _TEXTS, feedback_token=feedback_token,
                         log=log)
