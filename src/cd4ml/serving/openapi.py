"""The app's OpenAPI document, exact for the model it serves.

FastAPI lists the routes; this fills in what only the loaded model knows, so that a
client generator or a fuzzer (the test suite runs schemathesis over it) sees the real
contract: the model's name and version as the only values of the v2 path parameters,
its request fields with their types and the values it serves (series keys and dates
as enums, from :class:`~cd4ml.registry.servable.ServableModel`), the request body of
every protocol (native JSON rows, the v2 inference request, MLflow's four JSON shapes
and ``text/csv``, feedback items) and every answer a route gives, domain refusals
included (an unknown series, an unknown request id: 404/422).

JSON Schema cannot say that columns or tensors hold equally many values, so the
column and tensor shapes are declared for one row (``shape`` an array of 1s); batches
of rows, ``rows`` and ``dataframe_records`` carry up to ``serving.max_batch_rows``.
A document is built once per model version (:func:`api_spec` is called on a swap).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from cd4ml.config import ServingConfig
from cd4ml.registry.servable import ServableModel
from cd4ml.serving.feedback import MAX_VALUE
from cd4ml.serving.v2 import NUMERIC

__all__ = ["api_spec", "install_spec", "field_schemas", "complete_spec"]

_REF = "#/components/schemas/"
#: the numeric v2 datatypes a numeric field takes (BOOL decodes to true/false, which a
#: numeric field refuses)
_V2_NUMERIC = [t for t in NUMERIC if t != "BOOL"]


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": _REF + name}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def field_schemas(model: ServableModel) -> dict[str, dict[str, Any]]:
    """Each request field's schema: the key values the model serves, its dates."""
    fields, series, dates = model.row_keys()
    out: dict[str, dict[str, Any]] = {}
    for i, f in enumerate(fields[:-1]):
        vals = sorted({key[i] for key in series}, key=lambda v: (str(type(v)), v))
        if model.numeric.get(f):
            kind = "integer" if all(isinstance(v, int) for v in vals) else "number"
            out[f] = {"type": kind, "enum": vals}
        else:
            out[f] = {"type": "string", "enum": [str(v) for v in vals]}
    out[fields[-1]] = {"type": "string", "format": "date", "enum": dates,
                       "description": f"a week date from {dates[0]} to {dates[-1]}"}
    return out


def predict_components(row_name: str, row: dict[str, Any], rows: dict[str, Any],
                       answer: dict[str, Any], name: str, version: int | None,
                       ) -> dict[str, Any]:
    """``/predict``'s request (a row called ``row_name``, a list, or ``{"rows": ...}``)
    and its response (``answer`` per row) for the model ``name`` at ``version``."""
    return {
        row_name: row,
        "PredictRequest": {"oneOf": [_ref(row_name), rows, {
            "type": "object", "required": ["rows"], "additionalProperties": False,
            "properties": {"rows": rows}}]},
        "PredictResponse": {"type": "object",
                            "required": ["model", "version", "request_id", "predictions",
                                         "latency_ms"],
                            "properties": {"model": {"const": name},
                                           "version": {"const": version},
                                           "request_id": {"type": "string"},
                                           "predictions": {"type": "array", "items": answer},
                                           "prediction": answer,
                                           "latency_ms": {"type": "number"}}},
    }


def shared_components(names: list[str], fields: list[dict[str, Any]], rows: dict[str, Any],
                      columns: dict[str, Any], items: dict[str, Any], n: int,
                      ) -> dict[str, Any]:
    """The request schemas every kind of model shares: feedback and MLflow's four JSON
    shapes, given the request fields' ``names`` and ``fields`` schemas, the ``rows`` and
    ``columns`` schemas of a batch, the feedback ``items`` and the row limit ``n``."""
    params = {"type": "object", "description": "inference parameters (ignored)"}
    error = {"type": "object", "required": ["detail"], "properties": {
        "detail": {"type": "string"}, "errors": {"type": "array", "items": {
            "type": "object"}}}}
    return {
        "FeedbackRequest": {"oneOf": [_ref("FeedbackItem"), items, {
            "type": "object", "required": ["feedback"], "additionalProperties": False,
            "properties": {"feedback": items}}]},
        "FeedbackResponse": {"type": "object", "required": ["accepted"],
                             "properties": {"accepted": {"type": "integer", "minimum": 0}}},
        "Error": error,
        "MlflowRequest": {"oneOf": [
            {"type": "object", "required": ["dataframe_split"], "additionalProperties": False,
             "properties": {"params": params, "dataframe_split": {
                 "type": "object", "required": ["columns", "data"],
                 "properties": {
                     "columns": {"type": "array", "prefixItems": [{"const": f} for f in names],
                                 "minItems": len(names), "maxItems": len(names)},
                     "data": {"type": "array", "minItems": 1, "maxItems": n, "items": {
                         "type": "array", "prefixItems": fields,
                         "minItems": len(names), "maxItems": len(names)}}}}}},
            {"type": "object", "required": ["dataframe_records"], "additionalProperties": False,
             "properties": {"params": params, "dataframe_records": rows}},
            {"type": "object", "required": ["instances"], "additionalProperties": False,
             "properties": {"params": params, "instances": {"anyOf": [rows, columns]}}},
            {"type": "object", "required": ["inputs"], "additionalProperties": False,
             "properties": {"params": params, "inputs": {"anyOf": [rows, columns]}}}]},
    }


def _components(model: ServableModel, s: ServingConfig) -> dict[str, Any]:
    fs = field_schemas(model)
    names = list(fs)
    n = s.max_batch_rows
    row = {"type": "object", "required": names, "additionalProperties": False,
           "properties": fs}
    rows = {"type": "array", "items": _ref("ForecastRow"), "minItems": 1, "maxItems": n}
    column = {f: {"anyOf": [sch, {"type": "array", "items": sch, "minItems": 1,
                                  "maxItems": 1}]} for f, sch in fs.items()}
    columns = {"type": "object", "required": names, "additionalProperties": False,
               "properties": column,
               "description": "columns of equally many values (declared here for one row)"}
    finite = {"type": "number", "minimum": -MAX_VALUE, "maximum": MAX_VALUE}
    by_id = {"type": "object", "required": ["request_id"], "additionalProperties": False,
             "properties": {"request_id": {"type": "string", "minLength": 1,
                                           "maxLength": 128,
                                           "pattern": "^[A-Za-z0-9._:-]+$"},
                            "row": {"type": "integer", "minimum": 0},
                            "actual": finite, "reward": finite,
                            "actuals": {"type": "array", "items": finite, "minItems": 1}},
             "anyOf": [{"required": ["actual"]}, {"required": ["actuals"]},
                       {"required": ["reward"]}]}
    by_keys = {"type": "object", "required": names, "additionalProperties": False,
               "properties": {**fs, "actual": finite, "reward": finite},
               "anyOf": [{"required": ["actual"]}, {"required": ["reward"]}]}
    items = {"type": "array", "items": _ref("FeedbackItem"), "minItems": 1, "maxItems": n}

    def tensor(f: str, sch: dict[str, Any]) -> dict[str, Any]:
        dtypes = _V2_NUMERIC if sch["type"] in ("integer", "number") else ["BYTES"]
        return {"type": "object", "required": ["name", "shape", "datatype", "data"],
                "additionalProperties": False, "properties": {
                    "name": {"const": f},
                    "shape": {"type": "array", "items": {"const": 1},
                              "description": "one row in this document; any shape whose "
                                             "size is the number of values"},
                    "datatype": {"enum": dtypes},
                    "parameters": {"type": "object", "properties": {
                        "binary_data_size": False},
                        "description": "binary_data_size: with the binary extension only"},
                    "data": {"type": "array", "items": sch, "minItems": 1, "maxItems": 1}}}

    return {
        **predict_components("ForecastRow", row, rows, {"type": "number"}, model.name,
                             model.version),
        "FeedbackItem": {"oneOf": [by_id, by_keys]},
        **shared_components(names, list(fs.values()), rows, columns, items, n),
        "MlflowResponse": {"type": "object", "required": ["predictions"], "properties": {
            "predictions": {"type": "array", "items": {"type": "number"}}}},
        "MlflowError": {"type": "object", "required": ["error_code", "message"],
                        "properties": {"error_code": {"type": "string"},
                                       "message": {"type": "string"}}},
        "InferenceRequest": {
            "type": "object", "required": ["inputs"], "additionalProperties": False,
            "properties": {
                "id": {"type": "string"},
                "parameters": {"type": "object", "properties": {
                    "binary_data_output": {"type": "boolean"}}},
                "inputs": {"type": "array", "minItems": len(names), "maxItems": len(names),
                           "prefixItems": [tensor(f, sch) for f, sch in fs.items()]},
                "outputs": {"type": "array", "items": {
                    "type": "object", "required": ["name"], "additionalProperties": False,
                    "properties": {"name": {"const": "prediction"},
                                   "parameters": {"type": "object", "properties": {
                                       "binary_data": {"type": "boolean"}}}}}}}},
        "InferenceResponse": {
            "type": "object", "required": ["model_name", "model_version", "outputs"],
            "properties": {"model_name": {"const": model.name},
                           "model_version": {"const": str(model.version)},
                           "id": {"type": "string"},
                           "outputs": {"type": "array", "items": {
                               "type": "object", "required": ["name", "datatype", "shape"],
                               "properties": {"name": {"const": "prediction"},
                                              "datatype": {"const": "FP64"},
                                              "shape": {"type": "array"},
                                              "data": {"type": "array",
                                                       "items": {"type": "number"}}}}}}},
        "V2Error": {"type": "object", "required": ["error"],
                    "properties": {"error": {"type": "string"}}},
        "ModelMetadata": {"type": "object", "required": ["name", "versions", "inputs",
                                                         "outputs"],
                          "properties": {"name": {"const": model.name},
                                         "versions": {"type": "array"},
                                         "inputs": {"type": "array"},
                                         "outputs": {"type": "array"}}},
    }


def _csv_pattern(model: ServableModel) -> str:
    fs = field_schemas(model)
    alts = [("(" + "|".join(re.escape(str(v)) for v in sch["enum"]) + ")") for sch in
            fs.values()]
    return "^" + ",".join(fs) + r"\n(" + ",".join(alts) + r"\n){1,20}$"


def _answers(ok: dict[str, Any] | None, err: str, codes: dict[int, str],
             ok_desc: str = "the answer") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if ok is not None:
        out["200"] = {"description": ok_desc, "content": ok}
    for code, desc in codes.items():
        out[str(code)] = {"description": desc, "content": _json(_ref(err))}
    return out


_GUARDED = {403: "a web page of another origin (serving.allowed_origins)",
            413: "a body over serving.max_body_bytes or a batch over serving.max_batch_rows",
            415: "a content type the route does not take",
            503: "the model is loading or the server is draining; retry",
            504: "the request took longer than serving.request_timeout_s"}


#: what the forecast document says of refusals and of the form
_FORECAST_TEXTS = {
    "predict_422": "a row the model cannot answer: a field missing or of the wrong type, "
                   "an unknown series, a date out of range",
    "feedback_422": "an item the log cannot take: an unknown series, a date out of range, "
                    "a value that is not a finite number",
    "form_200": "the form, with a forecast when asked (a field left out takes the form's "
                "default)",
    "form_422": "the form and why it cannot forecast"}


def api_spec(base: dict[str, Any], model: ServableModel, s: ServingConfig, *,
             feedback_token: bool = False, log: bool = True) -> dict[str, Any]:
    """``base`` (FastAPI's document of the routes) completed for ``model``."""
    return complete_spec(base, model.name, model.version, _components(model, s),
                         _csv_pattern(model), field_schemas(model), _FORECAST_TEXTS,
                         feedback_token=feedback_token, log=log)


def complete_spec(base: dict[str, Any], name_: str, version_: int | None,
                  components: dict[str, Any], csv_pattern: str,
                  form_fields: dict[str, dict[str, Any]], texts: dict[str, str], *,
                  feedback_token: bool, log: bool) -> dict[str, Any]:
    """``base`` with a model's components (the schemas each route's body and answers
    refer to), the pattern of its CSV bodies, the query parameters of its form, and
    what ``texts`` says of refusals."""
    spec = copy.deepcopy(base)
    spec.setdefault("components", {})["schemas"] = components
    paths = spec["paths"]
    name = {"name": "name", "in": "path", "required": True,
            "schema": {"type": "string", "enum": [name_]}}
    version = {"name": "version", "in": "path", "required": True,
               "schema": {"type": "string", "enum": [str(version_)]}}

    def body(content: dict[str, Any]) -> dict[str, Any]:
        return {"required": True, "content": content}

    paths["/predict"]["post"].update(
        requestBody=body(_json(_ref("PredictRequest"))),
        responses=_answers(_json(_ref("PredictResponse")), "Error", {
            **_GUARDED, 422: texts["predict_422"]}))
    fb = {**_GUARDED, 404: "an unknown request id", 422: texts["feedback_422"]}
    if feedback_token:
        fb[401] = "no or another bearer token (CD4ML_FEEDBACK_TOKEN)"
    if not log:
        fb[503] = "the prediction log is off (serving.log.enabled: false)"
    paths["/feedback"]["post"].update(
        requestBody=body(_json(_ref("FeedbackRequest"))),
        responses=_answers(_json(_ref("FeedbackResponse")), "Error", fb))
    paths["/invocations"]["post"].update(
        requestBody=body({**_json(_ref("MlflowRequest")), "text/csv": {"schema": {
            "type": "string", "pattern": csv_pattern}}}),
        responses=_answers(_json(_ref("MlflowResponse")), "MlflowError", {
            **_GUARDED, 422: "rows the model cannot answer, or a body in none of the "
                             "shapes"}))
    infer_ok = {**_json(_ref("InferenceResponse")), "application/octet-stream": {
        "schema": {"type": "string", "format": "binary"}}}
    infer_err = {**_GUARDED, 400: "a request that breaks the protocol",
                 404: "another model or version", 422: "rows the model cannot answer"}
    for path, params in (("/v2/models/{name}/infer", [name]),
                         ("/v2/models/{name}/versions/{version}/infer", [name, version])):
        paths[path]["post"].update(
            parameters=params, requestBody=body(_json(_ref("InferenceRequest"))),
            responses=_answers(infer_ok, "V2Error", infer_err))
    meta_err = {400: "a version that is not a number", 404: "another model or version"}
    for path, params in (("/v2/models/{name}", [name]),
                         ("/v2/models/{name}/versions/{version}", [name, version])):
        paths[path]["get"].update(parameters=params, responses=_answers(
            _json(_ref("ModelMetadata")), "V2Error", meta_err))
    for path, params in (("/v2/models/{name}/ready", [name]),
                         ("/v2/models/{name}/versions/{version}/ready", [name, version])):
        paths[path]["get"].update(parameters=params, responses=_answers(
            _json({"type": "object"}), "V2Error", {**meta_err, 503: "not ready"}))
    html = {"text/html": {"schema": {"type": "string"}}}
    paths["/"]["get"].update(
        parameters=[{"name": f, "in": "query", "required": False, "schema": sch}
                    for f, sch in form_fields.items()],
        responses={"200": {"description": texts["form_200"], "content": html},
                   "422": {"description": texts["form_422"], "content": html}})
    text = {"text/plain": {"schema": {"type": "string"}}}
    for path, content, more in (
            ("/live", _json({"type": "object"}), {}),
            ("/ready", _json({"type": "object"}), {503: "not ready"}),
            ("/health", _json({"type": "object"}), {503: "not ready"}),
            ("/metrics", text, {}), ("/version", text, {}),
            # MLflow's answer, which is "\n" (labelled application/json by MLflow)
            ("/ping", {"text/plain": {"schema": {"type": "string"}}}, {503: "not ready"}),
            ("/v2", _json({"type": "object"}), {}),
            ("/v2/health/live", _json({"type": "object"}), {}),
            ("/v2/health/ready", _json({"type": "object"}), {503: "not ready"})):
        if path in paths:
            paths[path]["get"]["responses"] = {
                "200": {"description": "the answer", "content": content},
                **{str(c): {"description": d, "content": _json({"type": "object"})}
                   for c, d in more.items()}}
    return spec


def install_spec(app: Any, holder: Any, contract_of: Any, s: ServingConfig, *,
                 feedback_token: bool, log: bool) -> None:
    """Serve ``/openapi.json`` of FastAPI ``app`` as the document of the model ``holder``
    (a :class:`~cd4ml.serving.hotswap.ModelHolder`) serves, which its contract
    (``contract_of(model)``) writes (:func:`api_spec` for a forecast): built once per
    model version, again after a swap."""
    base = app.openapi
    built: dict[str, tuple[Any, dict[str, Any]]] = {}
    holder.listeners.append(lambda old, new: built.clear())

    def openapi() -> dict[str, Any]:
        m = holder.current
        if m is None:  # still loading: the routes without the model's contract
            return base()
        got = built.get("spec")
        if got is None or got[0] is not m:
            got = built["spec"] = (m, contract_of(m).api_spec(
                base(), s, feedback_token=feedback_token, log=log))
        return got[1]

    app.openapi = openapi
