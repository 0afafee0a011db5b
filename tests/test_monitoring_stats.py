"""The drift statistics, computed on summaries, against SciPy on the rows themselves.

Real data: ACS employment (2015 against 2018, and small samples of both, so SciPy's exact
KS path is checked too) and the Walmart sales and features (before and after the
MarkDown onset, November 2011). Each statistic must equal SciPy's within 1e-6.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial import distance

from cd4ml.monitoring import stats as ms
from cd4ml.monitoring.summary import ColumnSummary




@pytest.fixture(scope="module")
def acs(acs_years: pd.DataFrame) -> pd.DataFrame:
    return acs_years  # every ACS row, all years (conftest)


@pytest.fixture(scope="module")
def walmart(full_walmart) -> tuple[pd.DataFrame, pd.DataFrame]:
    sales = pd.read_csv(full_walmart / "train.csv.zip", parse_dates=["Date"])
    feats = pd.read_csv(full_walmart / "features.csv", parse_dates=["Date"])
    df = sales.merge(feats.drop(columns="IsHoliday"), on=["Store", "Date"], how="left")
    cut = pd.Timestamp("2011-11-01")
    return df[df.Date < cut], df[df.Date >= cut]


def _rows(s: pd.Series) -> np.ndarray:
    a = pd.to_numeric(s, errors="coerce").to_numpy(np.float64)
    return a[np.isfinite(a)]


def _numeric_pairs(acs, walmart):
    ref, cur = acs[acs.year == 2015], acs[acs.year == 2018]
    small_r, small_c = ref.sample(800, random_state=1), cur.sample(3000, random_state=2)
    w_ref, w_cur = walmart
    pairs = [(f"acs.{c}", ref[c], cur[c]) for c in ("AGEP", "SCHL", "RELP", "ESP", "RAC1P")]
    pairs += [(f"acs-small.{c}", small_r[c], small_c[c]) for c in ("AGEP", "SCHL")]
    pairs += [(f"walmart.{c}", w_ref[c], w_cur[c])
              for c in ("Weekly_Sales", "Temperature", "Fuel_Price", "CPI", "Unemployment")]
    # MarkDown1 has values only after the onset: compare two halves of the current side
    half = len(w_cur) // 2
    pairs.append(("walmart.MarkDown1", w_cur["MarkDown1"][:half], w_cur["MarkDown1"][half:]))
    return pairs


def test_numeric_statistics_equal_scipy_on_real_data(acs, walmart) -> None:
    for name, r, c in _numeric_pairs(acs, walmart):
        rs, cs = ColumnSummary.of(r, "numeric"), ColumnSummary.of(c, "numeric")
        rr, cc = _rows(r), _rows(c)
        assert (rs.n, cs.n) == (len(rr), len(cc)), name
        d, p = ms.ks(rs, cs)
        ref = stats.ks_2samp(rr, cc)
        assert d == pytest.approx(ref.statistic, abs=1e-9), name
        assert p == pytest.approx(ref.pvalue, abs=1e-6), name
        w = ms.wasserstein(rs, cs)
        assert w == pytest.approx(stats.wasserstein_distance(rr, cc), rel=1e-9, abs=1e-9), name
        assert ms.normed_wasserstein(rs, cs) == pytest.approx(
            stats.wasserstein_distance(rr, cc) / max(np.std(rr), 0.001), rel=1e-9), name
        assert rs.std() == pytest.approx(np.std(rr), rel=1e-12), name


def _shares_on_rows(rr: np.ndarray, cc: np.ndarray, categorical: bool):
    """Shares computed from the rows, as Evidently bins them (the reference we agree with)."""
    if not categorical and len(np.unique(rr)) > ms.BIN_VALUES:
        edges = np.histogram_bin_edges(np.concatenate([rr, cc]), bins="sturges")
        return np.histogram(rr, edges)[0] / len(rr), np.histogram(cc, edges)[0] / len(cc)
    keys = np.union1d(np.unique(rr), np.unique(cc))
    a = pd.Series(rr).value_counts().reindex(keys, fill_value=0).to_numpy()
    b = pd.Series(cc).value_counts().reindex(keys, fill_value=0).to_numpy()
    return a / len(rr), b / len(cc)


def test_shares_jensen_shannon_and_psi_equal_the_row_computation(acs, walmart) -> None:
    for name, r, c in _numeric_pairs(acs, walmart):
        rs, cs = ColumnSummary.of(r, "numeric"), ColumnSummary.of(c, "numeric")
        p, q = _shares_on_rows(_rows(r), _rows(c), categorical=False)
        mp, mq = ms.shares(rs, cs)
        np.testing.assert_allclose(mp, p, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(mq, q, atol=1e-12, err_msg=name)
        assert ms.jensen_shannon(rs, cs) == pytest.approx(distance.jensenshannon(p, q),
                                                          abs=1e-9), name
        fp, fq = (np.where(x == 0, (x[x > 0].min() / 1e6 if x[x > 0].min() <= 1e-4
                                    else 1e-4), x) for x in (p, q))
        assert ms.psi(rs, cs) == pytest.approx(np.sum((fp - fq) * np.log(fp / fq)),
                                               abs=1e-9), name


def test_categorical_statistics_equal_scipy(acs, walmart) -> None:
    ref, cur = acs[acs.year == 2015], acs[acs.year == 2018]
    w_ref, w_cur = walmart
    pairs = [(f"acs.{c}", ref[c], cur[c]) for c in ("MAR", "CIT", "ANC", "SEX", "DIS")]
    pairs.append(("walmart.Dept", w_ref["Dept"], w_cur["Dept"]))
    pairs.append(("acs-small.MAR", ref["MAR"].head(500), cur["MAR"].head(700)))
    for name, r, c in pairs:
        rs, cs = ColumnSummary.of(r, "categorical"), ColumnSummary.of(c, "categorical")
        keys = sorted(set(r.astype(str)) | set(c.astype(str)))
        a = r.astype(str).value_counts().reindex(keys, fill_value=0).to_numpy()
        b = c.astype(str).value_counts().reindex(keys, fill_value=0).to_numpy()
        seen = a > 0
        x, pv = ms.chi_square(rs, cs)
        exp = stats.chisquare(b[seen], a[seen] * b[seen].sum() / a[seen].sum())
        assert x == pytest.approx(exp.statistic, rel=1e-9), name
        assert pv == pytest.approx(exp.pvalue, abs=1e-6), name
        assert ms.jensen_shannon(rs, cs) == pytest.approx(
            distance.jensenshannon(a / a.sum(), b / b.sum()), abs=1e-9), name
    # the proportion z-test of a binary column against SciPy's normal distribution
    r, c = ref["SEX"], cur["SEX"]
    p1, p2 = (r == 1).mean(), (c == 1).mean()
    pool = ((r == 1).sum() + (c == 1).sum()) / (len(r) + len(c))
    z = (p1 - p2) / np.sqrt(pool * (1 - pool) * (1 / len(r) + 1 / len(c)))
    assert ms.z_proportions(ColumnSummary.of(r, "categorical"),
                            ColumnSummary.of(c, "categorical")) == pytest.approx(
        2 * stats.norm.sf(abs(z)), abs=1e-9)


def test_summaries_merge_exactly_like_the_rows_together(acs) -> None:
    ages = acs["AGEP"]
    parts = [ColumnSummary.of(ages.iloc[i:i + 50_000], "numeric")
             for i in range(0, len(ages), 50_000)]
    merged = parts[0]
    for p in parts[1:]:
        merged = merged.merge(p)
    whole = ColumnSummary.of(ages, "numeric")
    np.testing.assert_array_equal(merged.values, whole.values)
    np.testing.assert_array_equal(merged.counts, whole.counts)
    cats = [ColumnSummary.of(acs["MAR"].iloc[i:i + 70_000], "categorical")
            for i in range(0, len(acs), 70_000)]
    m = cats[0]
    for p in cats[1:]:
        m = m.merge(p)
    assert m.to_dict() == ColumnSummary.of(acs["MAR"], "categorical").to_dict()


def test_odd_columns_give_defined_statistics() -> None:
    const = ColumnSummary.of(pd.Series([5.0] * 50), "numeric")
    other = ColumnSummary.of(pd.Series([5.0] * 40 + [6.0] * 10), "numeric")
    assert ms.ks(const, const) == (0.0, 1.0)
    assert ms.normed_wasserstein(const, other) == pytest.approx(0.2 / 0.001)
    assert ms.chi_square(ColumnSummary.of(pd.Series(["a"] * 9), "categorical"),
                         ColumnSummary.of(pd.Series(["a", "b"]), "categorical")) == (0.0, 1.0)
    inf = ColumnSummary.of(pd.Series([1.0, np.inf, None, -np.inf]), "numeric")
    assert (inf.n, inf.missing) == (1, 3)
    with pytest.raises(ValueError, match="at least one non-missing row"):
        ms.ks(ColumnSummary.of(pd.Series([None, None], dtype=float), "numeric"), const)
