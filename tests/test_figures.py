"""Figure builders: the right traces, labelled axes, threshold lines where the numbers say."""

import numpy as np
import pandas as pd
import pytest

from echoaudit import figures as F
from echoaudit.audit.scale import to_logit
from echoaudit.audit.occupancy import ideal_recall_curve
from echoaudit.audit.recall import recall_vs_n, recall_vs_threshold


def _axes(fig):
    return fig.layout.xaxis.title.text, fig.layout.yaxis.title.text


def test_strip_has_threshold_line_and_labels():
    fig = F.frame_similarity_strip([0, 2, 4], [0.1, 0.9, 0.5], 0.73)
    x, y = _axes(fig)
    assert "frame" in x and "logit" in y
    np.testing.assert_allclose(fig.data[0].y, to_logit(np.array([0.1, 0.9, 0.5])))
    np.testing.assert_allclose(fig.data[0].customdata, [0.1, 0.9, 0.5])  # probability on hover
    assert "probability" in fig.data[0].hovertemplate
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert len(lines) == 1 and lines[0].y0 == pytest.approx(to_logit(0.73)) == lines[0].y1


def test_histograms_two_sets_and_vertical_threshold():
    held, syn = [0.1, 0.2, 0.99991], [0.3, 0.95, 0.99, 0.99999]
    fig = F.score_histograms(held, syn, 0.9, nbins=30)
    assert [t.name for t in fig.data] == ["real held-out", "synthetic"] and "logit" in _axes(fig)[0]
    edges = np.linspace(*fig.layout.xaxis.range, 31)
    for trace, values in zip(fig.data, (held, syn)):
        assert trace.y.sum() == pytest.approx(100.0)  # share of that set, in %
        counts, _ = np.histogram(to_logit(np.array(values)), bins=edges)
        np.testing.assert_allclose(trace.y, 100 * counts / len(values))
        assert "probability" in trace.hovertemplate
    # every value and the threshold inside the axis; probabilities near 1 land in different bins
    assert fig.layout.xaxis.range[0] <= to_logit(0.1) and to_logit(0.99999) <= fig.layout.xaxis.range[1]
    assert np.count_nonzero(fig.data[1].y) == 4
    assert fig.layout.shapes[0].x0 == pytest.approx(to_logit(0.9))


def test_roc_figure_matches_sklearn_curve():
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)
    s = rng.random(50) + 0.3 * y
    fig = F.roc_figure(y, s, {"value": 0.8, "low": 0.7, "high": 0.9})
    fpr, tpr, _ = roc_curve(y, s)
    np.testing.assert_allclose(fig.data[1].x, fpr)
    np.testing.assert_allclose(fig.data[1].y, tpr)
    assert "AUC 0.800" in fig.data[1].name and "0.700-0.900" in fig.data[1].name


def _best(n, n_train, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"query": [f"q{i}" for i in range(n)],
                         "train_video": [f"v{j}" for j in rng.integers(0, n_train, n)],
                         "score": rng.random(n)})


def test_recall_figures_plot_percent_and_ideal_curve():
    best = _best(30, 20)
    vt = recall_vs_threshold(best, 20, [0.0, 0.5, 0.99, 0.9999])
    fig = F.recall_threshold_figure({"synthetic": vt}, 0.99)
    line = [t for t in fig.data if t.name == "synthetic" and t.fill is None][0]
    np.testing.assert_allclose(line.y, 100 * vt["recall"].to_numpy())
    # x on the re-ID logit scale (0.99 and 0.9999 far apart), probability on hover
    np.testing.assert_allclose(line.x, to_logit(vt["threshold"].to_numpy()))
    np.testing.assert_allclose(line.customdata, vt["threshold"].to_numpy())
    assert "logit" in _axes(fig)[0] and "probability" in line.hovertemplate
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert len(lines) == 1 and lines[0].x0 == pytest.approx(to_logit(0.99)) == lines[0].x1

    vn = recall_vs_n(best, 20, [1, 10, 30], None, n_rep=5, seed=0)
    learned = {"recall_limit": 0.6, "recall_low": 0.4, "recall_high": 0.8}
    fig = F.recall_n_figure({"synthetic": vn, "real held-out": vn}, 20, learned=learned)
    ideal = fig.data[0]
    np.testing.assert_allclose(ideal.y, 100 * ideal_recall_curve(np.asarray(ideal.x), 20))
    assert any(s.type == "line" and s.y0 == pytest.approx(60.0) for s in fig.layout.shapes)
    assert any(s.type == "rect" and s.y0 == pytest.approx(40.0) and s.y1 == pytest.approx(80.0)
               for s in fig.layout.shapes)


def test_pca_coordinates_match_sklearn_up_to_sign():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(1)
    e = rng.normal(size=(30, 6)) * np.array([5, 3, 1, 0.5, 0.2, 0.1])
    emb = pd.DataFrame({"set": ["train"] * 20 + ["gen"] * 10, "video": [f"v{i}" for i in range(30)],
                        "emb": list(e)})
    out = F.pca_coordinates(emb)
    ref = PCA(2).fit(e[:20]).transform(e)
    for k, col in enumerate(["pc1", "pc2"]):
        sign = np.sign(np.dot(out[col], ref[:, k]))
        np.testing.assert_allclose(out[col].to_numpy(), sign * ref[:, k], atol=1e-8)


def test_coverage_map_and_bars():
    coords = pd.DataFrame({"set": ["train", "train", "train", "gen"], "video": ["a", "b", "c", "g"],
                           "pc1": [0.0, 1, 2, 3], "pc2": [0.0, 1, 2, 3]})
    covered = pd.DataFrame({"train_video": ["a", "b", "c"], "covered": [True, False, False], "EF": [50.0, 60, 70]})
    fig = F.coverage_map(coords, covered, "gen")
    assert [list(t.customdata) for t in fig.data] == [["a"], ["b", "c"], ["g"]]
    groups = pd.DataFrame({"group": ["x", "y"], "n_train": [4, 2], "n_covered": [1, 2], "coverage": [0.25, 1.0],
                           "low": [0.05, 0.3], "high": [0.7, 1.0]})
    bar = F.coverage_bars(groups, by_label="view").data[0]
    np.testing.assert_allclose(bar.y, [25.0, 100.0])
    np.testing.assert_allclose(bar.error_y.array, [45.0, 0.0])
    np.testing.assert_allclose(bar.error_y.arrayminus, [20.0, 70.0])


def test_temporal_figures():
    tmp = pd.DataFrame({"set": ["real held-out"] * 3 + ["gen"] * 3, "video": ["r"] * 3 + ["s"] * 3,
                        "frame": [0, 2, 4] * 2, "first": [1, 0.9, 0.8, 1, 0.4, 0.2],
                        "correlation": [1, 0.95, 0.9, 1, 0.5, 0.1]})
    fig = F.temporal_curves_figure(tmp, ["r", "s"], "correlation")
    assert [t.y.tolist() for t in fig.data] == [[1, 0.95, 0.9], [1, 0.5, 0.1]]
    assert "correlation" in fig.layout.yaxis.title.text
    # with times in seconds (25 fps vs 12.5 fps) both sets share the axis in seconds
    timed = tmp.assign(time_s=[0.0, 0.08, 0.16, 0.0, 0.16, 0.32])
    fig = F.temporal_curves_figure(timed, ["r", "s"], "first")
    assert [t.x.tolist() for t in fig.data] == [[0.0, 0.08, 0.16], [0.0, 0.16, 0.32]]
    assert "(s)" in fig.layout.xaxis.title.text
    summ = pd.DataFrame({"set": ["real held-out", "gen", "gen"], "mean": [0.9, 0.5, 0.4]})
    fig = F.temporal_distribution_figure(summ, "mean", "mean")
    assert [t.name for t in fig.data] == ["real held-out (n=1)", "gen (n=2)"]
    assert [t.boxpoints for t in fig.data] == ["all", "all"]
    # an EchoNet-size set: quartiles and outliers, not 10,000 points
    big = pd.DataFrame({"set": ["gen"] * (F.MAX_BOX_POINTS + 1), "mean": np.linspace(0, 1, F.MAX_BOX_POINTS + 1)})
    assert F.temporal_distribution_figure(big, "mean", "mean").data[0].boxpoints == "outliers"


def test_box_summary_matches_numpy_and_tukey_whiskers():
    rng = np.random.default_rng(0)
    v = np.r_[rng.normal(0.8, 0.02, 5_000), [0.1, 0.2, 1.5]]
    b = F.box_summary(v)
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    assert (b["q1"], b["median"], b["q3"]) == pytest.approx((q1, med, q3))
    iqr = q3 - q1
    inside = v[(v >= q1 - 1.5 * iqr) & (v <= q3 + 1.5 * iqr)]
    assert b["lowerfence"] == inside.min() and b["upperfence"] == inside.max()
    assert b["n"] == len(v) and b["n_outliers"] == int(np.sum((v < q1 - 1.5 * iqr) | (v > q3 + 1.5 * iqr)))
    assert {0.1, 0.2, 1.5} <= set(b["outliers"].tolist())
    few = F.box_summary(v, max_outliers=5)
    assert len(few["outliers"]) == 5 and few["outliers"][0] == 0.1 and few["outliers"][-1] == 1.5  # extremes kept
    assert F.box_summary([np.nan])["n"] == 0


def test_distribution_figure_size_does_not_grow_with_the_set():
    def spec_values(n):
        rng = np.random.default_rng(1)
        summ = pd.DataFrame({"set": ["real held-out"] * 48 + ["gen"] * n,
                             "mean": np.r_[rng.uniform(0.7, 1, 48), rng.normal(0.8, 0.05, n)]})
        fig = F.temporal_distribution_figure(summ, "mean", "mean")
        return sum(len(np.atleast_1d(np.asarray(t.y, dtype=object)).ravel()) if t.q1 is None else
                   sum(len(s) for s in t.y) for t in fig.data), fig

    small, _ = spec_values(F.MAX_BOX_POINTS)
    n10k, fig = spec_values(10_000)
    n100k, _ = spec_values(100_000)
    assert small == 48 + F.MAX_BOX_POINTS
    assert n10k < 48 + 500 and n100k < 48 + F.MAX_BOX_POINTS + 1  # outliers only, capped
    box = fig.data[1]
    assert box.name == "gen (n=10000)" and box.q1 is not None and box.boxpoints == "outliers"
    # no outlier: no sample at all (an empty one makes plotly.js drop the box)
    flat = pd.DataFrame({"set": ["gen"] * (F.MAX_BOX_POINTS + 1), "mean": np.linspace(0, 1, F.MAX_BOX_POINTS + 1)})
    assert F.temporal_distribution_figure(flat, "mean", "mean").data[0].y is None


def test_scatters_draw_a_bounded_sample():
    n = F.MAX_SCATTER_POINTS + 500
    coords = pd.DataFrame({"set": ["train"] * 3 + ["gen"] * n, "video": ["a", "b", "c"] + [f"g{i}" for i in range(n)],
                           "pc1": np.arange(n + 3.0), "pc2": np.arange(n + 3.0)})
    covered = pd.DataFrame({"train_video": ["a", "b", "c"], "covered": [True, False, False]})
    fig = F.coverage_map(coords, covered, "gen")
    assert [list(t.customdata) for t in fig.data[:2]] == [["a"], ["b", "c"]]  # every training video
    assert len(fig.data[2].x) == F.MAX_SCATTER_POINTS and f"of {n:,} drawn" in fig.data[2].name
    pts = pd.DataFrame({"FileName": [f"g{i}" for i in range(n)], "EF_requested": np.linspace(20, 70, n),
                        "EF_predicted": np.linspace(25, 75, n)})
    fig = F.ef_agreement_scatter(pts)
    assert len(fig.data[1].x) == F.MAX_SCATTER_POINTS and "drawn" in fig.data[1].name
    assert len(F.ef_agreement_scatter(pts.head(10)).data[1].x) == 10
