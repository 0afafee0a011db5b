"""What a tabular model's answer is, per task: a classifier's label and probabilities, a
regressor's number. One class each, looked up once per loaded version by its task
(:data:`ANSWERS`): the log's columns, batch scoring's columns, the v2 tensors, MLflow's
predictions, MLServer's ``predict``, the OpenAPI schemas of an answer and of an actual,
the form's result.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np

__all__ = ["ClassAnswers", "ValueAnswers", "ANSWERS", "v2_datatype"]

Tensor = tuple[str, str, list[int], Any]


def v2_datatype(values: list[Any]) -> str:
    """The v2 datatype of a list of class values (all of one kind).

    >>> v2_datatype([0, 1]), v2_datatype([False, True]), v2_datatype(["a", "b"])
    ('INT64', 'BOOL', 'BYTES')
    """
    if all(isinstance(v, (bool, np.bool_)) for v in values):
        return "BOOL"
    if all(isinstance(v, (int, np.integer)) for v in values):
        return "INT64"
    if all(isinstance(v, (int, float, np.number)) for v in values):
        return "FP64"
    return "BYTES"


class ClassAnswers:
    """A classifier: per row a label (by the model's threshold or argmax) and the
    probability of each class."""

    title = "Classifier"

    def __init__(self, model: Any) -> None:
        self.model = model
        self.classes = [v.item() if isinstance(v, np.generic) else v for v in model.classes]
        k = len(self.classes)
        self.label_datatype = v2_datatype(self.classes)
        #: the log holds numbers: a label is its class where classes are numbers, else
        #: the class's index (``label_index``)
        self.numeric_classes = self.label_datatype != "BYTES"
        self.output_names = ("label" if self.numeric_classes else "label_index",
                             *(f"probability_{c}" for c in self.classes))
        self._index = {c: i for i, c in enumerate(self.classes)}
        self.v2_outputs_meta = [
            {"name": "label", "datatype": self.label_datatype, "shape": [-1]},
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, k]}]
        booster = getattr(model.predictor, "booster", None)
        #: MLServer answers Booster.predict: a binary booster's positive-class probability
        #: alone (a multiclass one with two classes gives both)
        self._positive_only = k == 2 and (
            booster is None or booster.num_model_per_iteration() == 1)

    def shape(self, n: int) -> tuple[int, ...]:
        """The shape of the model's answer for ``n`` rows."""
        return (n, len(self.classes))

    def log_outputs(self, proba: np.ndarray) -> np.ndarray:
        """Per row the label (a number, see ``output_names``) and the probabilities."""
        labels = self.model.labels(proba)
        out = np.empty((len(proba), len(self.output_names)), np.float64)
        out[:, 1:] = proba
        if self.numeric_classes:
            out[:, 0] = labels
        else:
            out[:, 0] = [self._index[v] for v in labels.tolist()]
        return out

    def columns(self, proba: np.ndarray) -> dict[str, Any]:
        """Batch scoring's added columns: ``label`` and ``probability_<class>``."""
        P = np.asarray(proba, np.float64)
        return {"label": self.model.labels(P),
                **{f"probability_{c}": P[:, j] for j, c in enumerate(self.classes)}}

    def column_types(self) -> dict[str, str]:
        """The v2 datatype of each of :meth:`columns`."""
        return {"label": self.label_datatype,
                **{f"probability_{c}": "FP64" for c in self.classes}}

    def mlflow(self, proba: np.ndarray) -> list[Any]:
        """The labels, as MLflow's sklearn flavour answers ``predict``."""
        return self.model.labels(proba).tolist()  # type: ignore[no-any-return]

    def v2(self, proba: np.ndarray) -> list[Tensor]:
        n = len(proba)
        return [("label", self.label_datatype, [n], np.asarray(self.model.labels(proba))),
                ("probabilities", "FP64", [n, len(self.classes)],
                 np.asarray(proba, np.float64))]

    def mlserver(self, proba: np.ndarray) -> np.ndarray:
        """``Booster.predict``'s answer (what MLServer's LightGBM runtime returns)."""
        if self._positive_only:
            return np.asarray(proba[:, 1], np.float64)
        return np.asarray(proba, np.float64)

    def actual_errors(self, value: float, loc: str) -> list[dict[str, Any]]:
        """An actual must be a class (a number: the class, or its index where classes
        are not numbers)."""
        known = self.classes if self.numeric_classes else list(range(len(self.classes)))
        if any(value == c for c in known):
            return []
        what = f"one of the classes {self.classes}" if self.numeric_classes else \
            f"a class index 0..{len(self.classes) - 1} (classes {self.classes})"
        return [{"loc": f"{loc}.actual", "field": "actual", "value": value,
                 "problem": f"expected {what}"}]

    def schemas(self, finite: dict[str, Any]) -> dict[str, Any]:
        """JSON schemas of an answer row, of MLflow's prediction and of an actual."""
        keys = [str(c) for c in self.classes]
        return {"answer": {"type": "object", "required": ["label", "probabilities"],
                           "properties": {
                               "label": {"enum": list(self.classes)},
                               "probabilities": {"type": "object", "required": keys,
                                                 "properties": {k: {
                                                     "type": "number", "minimum": 0,
                                                     "maximum": 1} for k in keys}}}},
                "prediction": {"enum": list(self.classes)},
                "actual": {"enum": list(self.classes) if self.numeric_classes
                           else list(range(len(self.classes)))}}

    @staticmethod
    def html(row: dict[str, Any]) -> str:
        """The form's result: the label and a table of each class's probability."""
        probs = "".join(f'<tr><td>{html.escape(str(k))}</td><td id="probability-'
                        f'{html.escape(str(k))}">{float(p):.4f}</td></tr>'
                        for k, p in row["probabilities"].items())
        return (f'<p class="result">Predicted class: <b id="label">'
                f'{html.escape(str(row["label"]))}</b></p><table id="probabilities">'
                f'<tr><th>class</th><th>probability</th></tr>{probs}</table>')


class ValueAnswers:
    """A regressor: one number per row."""

    title = "Regression"
    output_names: tuple[str, ...] = ()  # one output per row: the log's ``prediction``
    v2_outputs_meta = [{"name": "prediction", "datatype": "FP64", "shape": [-1]}]
    classes = None

    def __init__(self, model: Any) -> None:
        self.model = model

    @staticmethod
    def shape(n: int) -> tuple[int, ...]:
        return (n,)

    @staticmethod
    def log_outputs(values: np.ndarray) -> np.ndarray:
        return values

    @staticmethod
    def columns(values: np.ndarray) -> dict[str, Any]:
        return {"prediction": np.asarray(values, np.float64)}

    @staticmethod
    def column_types() -> dict[str, str]:
        return {"prediction": "FP64"}

    @staticmethod
    def mlflow(values: np.ndarray) -> list[Any]:
        return np.asarray(values, np.float64).tolist()  # type: ignore[no-any-return]

    @staticmethod
    def v2(values: np.ndarray) -> list[Tensor]:
        return [("prediction", "FP64", [len(values)], np.asarray(values, np.float64))]

    @staticmethod
    def mlserver(values: np.ndarray) -> np.ndarray:
        return np.asarray(values, np.float64)

    @staticmethod
    def actual_errors(value: float, loc: str) -> list[dict[str, Any]]:
        return []  # any finite number (checked before)

    @staticmethod
    def schemas(finite: dict[str, Any]) -> dict[str, Any]:
        return {"answer": {"type": "number"}, "prediction": {"type": "number"},
                "actual": finite}

    @staticmethod
    def html(value: float) -> str:
        return (f'<p class="result">Prediction: <b id="prediction">'
                f'{html.escape(f"{float(value):,.6g}")}</b></p>')


#: a tabular servable's task -> what its answers are
ANSWERS: dict[str, type[ClassAnswers] | type[ValueAnswers]] = {
    "classification": ClassAnswers, "regression": ValueAnswers}
