"""Downstream utility: metrics and intervals by hand, the five training sets, and the
``train ef`` / ``eval utility`` / ``eval ef-agreement`` commands end to end on a micro
workspace (phantom videos, an untrained micro VAE, two-epoch micro EF models)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from echoaudit.audit.utility import (
    ARMS,
    bootstrap_metrics,
    ef_agreement,
    errors_by_ef_bin,
    patient_bootstrap_samples,
    regression_metrics,
    seed_spread,
    training_sets,
    utility_sentence,
    utility_table,
)

torch.set_num_threads(1)


# ---------------------------------------------------------------------------------------
# metrics, by hand


def test_regression_metrics_known_answers():
    y = np.array([30.0, 40.0, 50.0, 60.0])
    p = np.array([32.0, 38.0, 53.0, 59.0])  # errors +2, -2, +3, -1
    m = regression_metrics(y, p)
    assert m["mae"] == pytest.approx(2.0) and m["bias"] == pytest.approx(0.5)
    assert m["rmse"] == pytest.approx(np.sqrt((4 + 4 + 9 + 1) / 4))
    assert m["r2"] == pytest.approx(1 - 18 / 500)  # sum (y - 45)^2 = 500
    assert np.isnan(regression_metrics([50.0, 50.0], [49.0, 51.0])["r2"])  # no spread: no R^2
    assert regression_metrics(y, np.full(4, 45.0))["r2"] == pytest.approx(0.0)  # the mean predictor
    with pytest.raises(ValueError, match=r"\(V,\) or \(seeds, V\) with V = 4 videos, got shape \(3,\)"):
        regression_metrics(y, p[:3])


def test_seed_spread():
    s = seed_spread([4.0, 5.0, 6.0])
    assert s == {"mean": 5.0, "sd": 1.0, "min": 4.0, "max": 6.0, "n": 3}
    assert np.isnan(seed_spread([4.0])["sd"])


def test_bootstrap_draws_patients_as_the_rule_says():
    """Against an explicit loop: draw patients (sorted IDs) with the documented rng call,
    gather every video of each drawn patient, compute the metrics."""
    rng = np.random.default_rng(5)
    patients = np.array(["p2", "p0", "p0", "p1", "p2", "p2", "p3"])
    y = rng.uniform(20, 80, 7)
    p = y + rng.normal(0, 5, 7)
    got = patient_bootstrap_samples(y, p, patients, n_boot=50, seed=11)
    uniq = np.unique(patients)
    draws = np.random.default_rng(11).integers(0, len(uniq), size=(50, len(uniq)))
    for r in range(50):
        idx = np.concatenate([np.flatnonzero(patients == uniq[k]) for k in draws[r]])
        want = regression_metrics(y[idx], p[idx])
        for k in ("mae", "rmse", "bias"):
            assert got[k][r] == pytest.approx(want[k])
        assert got["r2"][r] == pytest.approx(want["r2"], nan_ok=True)


def test_two_videos_of_one_patient_move_together():
    """Doubling every patient's videos adds no independent evidence: the interval over
    patients is unchanged. A video-level bootstrap would narrow it (by about 1/sqrt 2)."""
    rng = np.random.default_rng(0)
    y = rng.uniform(20, 80, 20)
    p = y + rng.normal(0, 6, 20)
    pats = np.array([f"p{i}" for i in range(20)])
    one = bootstrap_metrics(y, p, pats, n_boot=400, seed=3)
    two = bootstrap_metrics(np.repeat(y, 2), np.repeat(p, 2), np.repeat(pats, 2), n_boot=400, seed=3)
    for k in ("mae", "rmse", "r2"):
        assert (two[k].low, two[k].high) == pytest.approx((one[k].low, one[k].high))
    as_videos = bootstrap_metrics(np.repeat(y, 2), np.repeat(p, 2), np.arange(40).astype(str), n_boot=400, seed=3)
    width = lambda e: e.high - e.low
    assert width(as_videos["mae"]) < 0.85 * width(one["mae"])
    assert "over 20 patients" in one["mae"].rule


def test_seeds_average_before_the_interval():
    y = np.array([30.0, 50.0, 70.0, 40.0])
    pats = np.array(["a", "b", "c", "d"])
    p = np.stack([y + 2.0, y - 4.0])  # seed MAEs 2 and 4
    est = bootstrap_metrics(y, p, pats, n_boot=100, seed=0)
    assert est["mae"].value == pytest.approx(3.0)
    assert est["mae"].low == pytest.approx(3.0) and est["mae"].high == pytest.approx(3.0)  # constant errors
    assert "mean of 2 training seeds" in est["mae"].rule


def test_errors_by_ef_bin_uses_the_coverage_bins():
    y = np.array([25.0, 35.0, 36.0, 55.0, 100.0])
    p = y + np.array([10.0, -2.0, 2.0, 1.0, -5.0])
    t = errors_by_ef_bin(y, p, ["a", "b", "b", "c", "d"], n_boot=50)
    assert t["group"].tolist() == ["[0, 30)", "[30, 40)", "[40, 50)", "[50, 60)", "[60, 70)", "[70, 100]"]
    assert t["n_videos"].tolist() == [1, 2, 0, 1, 0, 1] and t["n_patients"].tolist() == [1, 1, 0, 1, 0, 1]
    assert t.loc[0, "bias"] == 10.0 and t.loc[1, "mae"] == 2.0 and t.loc[1, "bias"] == 0.0
    assert np.isnan(t.loc[2, "mae"]) and t.loc[5, "bias"] == -5.0  # 100 is in the closed last bin
    with pytest.raises(ValueError, match="outside \\[0, 100\\]"):
        errors_by_ef_bin([101.0], [100.0], ["a"])


# ---------------------------------------------------------------------------------------
# the comparison


def test_training_sets_are_the_five_of_the_issue():
    real = [f"r{i}" for i in range(5)]
    syn = [f"s{i}" for i in range(10)]
    sets = training_sets(real, syn, ["s1", "s4", "s7"], seed=0)
    assert list(sets) == list(ARMS)
    assert sets["real"] == {"real": real, "synthetic": []}
    assert sets["synthetic"]["synthetic"] == syn
    assert sets["synthetic_filtered"]["synthetic"] == [n for n in syn if n not in ("s1", "s4", "s7")]
    sub = sets["synthetic_random"]["synthetic"]
    assert len(sub) == 7 and set(sub) <= set(syn) and sub == sorted(sub, key=syn.index)
    assert training_sets(real, syn, ["s1", "s4", "s7"], seed=0)["synthetic_random"] == sets["synthetic_random"]
    assert training_sets(real, syn, ["s1", "s4", "s7"], seed=1)["synthetic_random"] != sets["synthetic_random"]
    assert sets["real_plus_synthetic"] == {"real": real, "synthetic": syn}
    with pytest.raises(ValueError, match="1 flagged video\\(s\\) are not in the synthetic set, e.g. \\['zz'\\]"):
        training_sets(real, syn, ["zz"])


def test_utility_table_and_sentence():
    rng = np.random.default_rng(1)
    y = rng.uniform(20, 80, 30)
    pats = np.repeat([f"p{i}" for i in range(15)], 2)
    preds = {"real": np.stack([y + rng.normal(0, 3, 30) for _ in range(3)]),
             "synthetic": np.stack([y + rng.normal(4, 8, 30) for _ in range(3)])}
    t = utility_table(y, pats, preds, {"real": 100, "synthetic": 40, "synthetic_filtered": 1},
                      notes={"synthetic_filtered": "not trained: 1 training videos"}, n_boot=300)
    assert t["arm"].tolist() == ["real", "synthetic", "synthetic_filtered"]
    real, syn, filt = (t.iloc[i] for i in range(3))
    assert real["mae_vs_reference"] == 0.0 and real["seeds"] == 3
    want = np.mean([regression_metrics(y, p)["mae"] for p in preds["synthetic"]])
    assert syn["mae"] == pytest.approx(want) and syn["mae_low"] < want < syn["mae_high"]
    assert syn["mae_vs_reference"] == pytest.approx(want - real["mae"]) and syn["mae_vs_reference_low"] > 0
    assert syn["mae_seed_sd"] == pytest.approx(seed_spread([regression_metrics(y, p)["mae"] for p in preds["synthetic"]])["sd"])
    assert filt["seeds"] == 0 and np.isnan(filt["mae"]) and filt["note"].startswith("not trained")
    s = utility_sentence(t, n_patients=15)
    assert s.startswith(f"Trained on synthetic, the EF model is {abs(syn['mae_vs_reference']):.1f} EF points worse (MAE ")
    assert "on real patients than trained on real" in s and "paired bootstrap over 15 TEST patients" in s
    assert "mean of 3 training seeds" in s
    better = utility_table(y, pats, {"real": preds["synthetic"], "synthetic": preds["real"]}, {}, n_boot=100)
    assert " better " in utility_sentence(better)
    assert utility_sentence(t.iloc[:1]).startswith("No comparison")


def test_ef_agreement_known_answers():
    req = np.array([30.0, 45.0, 60.0, 75.0])
    a = ef_agreement(req, req + np.array([1.0, -1.0, 1.0, -1.0]), n_boot=200)
    assert a["n"] == 4 and a["mae"]["value"] == 1.0 and a["bias"]["value"] == 0.0
    assert a["pearson_r"]["value"] == pytest.approx(np.corrcoef(req, req + [1, -1, 1, -1])[0, 1])
    assert a["mae"]["low"] == a["mae"]["high"] == 1.0  # every error is 1 in size
    assert "over 4 generated videos" in a["mae"]["rule"] and "Pearson r" in a["sentence"]
    flat = ef_agreement(req, np.full(4, 50.0), n_boot=50)
    assert np.isnan(flat["pearson_r"]["value"]) and "undefined" in flat["sentence"]
    with pytest.raises(ValueError, match="at least 3 generated videos, got 2"):
        ef_agreement(req[:2], req[:2])


# ---------------------------------------------------------------------------------------
# end to end: micro workspace -> commands


def _write_set(root, rows, *, size=32, frames=16, fps=25.0):
    from echoaudit.data.echonet import EchoNetWriter
    from echoaudit.data.phantom import render_video, sample_acquisition, sample_anatomy

    with EchoNetWriter(root) as w:
        for name, patient, video, split, seed in rows:
            anat = sample_anatomy(seed, "a4c", patient)
            fr, lab = render_video(anat, sample_acquisition(seed, "a4c", patient, video), frames=frames, fps=fps, size=size)
            w.add(name, fr, fps, ef=lab["EF"], split=split, patient_id=f"P{patient}")
    return root


@pytest.fixture(scope="module")
def micro_ws(tmp_path_factory):
    """A workspace folder holding what `eval utility` reads: data (TRAIN/VAL/TEST by
    patient), a VAE (untrained, 8x8 latents), one synthetic set and its audit flags."""
    from echoaudit.models.vae import build_vae

    root = tmp_path_factory.mktemp("utility_ws")
    splits = ["TRAIN"] * 8 + ["VAL"] * 2 + ["TEST"] * 3
    _write_set(root / "data", [(f"R{p}_{v}", p, v, s, 0) for p, s in enumerate(splits) for v in range(2)])
    rows = [(f"SYN_{i}", 100 + i, 0, "TEST", 1) for i in range(6)]
    _write_set(root / "synthetic" / "syn", rows)
    build_vae((8, 8, 8), sample_size=32).save_pretrained(root / "vae", safe_serialization=True)
    (root / "audit").mkdir()
    pd.DataFrame({"query": [f"SYN_{i}" for i in range(6)], "flagged": [True, False, True, False, False, False]}).to_csv(
        root / "audit" / "syn_flags.csv", index=False)
    manifest = {"version": 3, "data": {"path": "data"}, "engine": {"size": 32}, "models": {"vae": {"path": "vae"}},
                "synthetic": {"syn": {"path": "synthetic/syn"}}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


MICRO_ARGS = ["--epochs", "2", "--width", "8", "--clip-frames", "8", "--batch-size", "8", "--n-boot", "50"]


def test_train_ef_command_end_to_end(micro_ws, tmp_path, capsys):
    from echoaudit.utility_cli import main

    out = tmp_path / "ef"
    assert main(["train", "ef", "--data", str(micro_ws / "data"), "--vae", str(micro_ws / "vae"), "--size", "32",
                 "--out", str(out), *MICRO_ARGS]) == 0
    text = capsys.readouterr().out
    assert "best validation MAE" in text and "TEST MAE:" in text and "TEST R^2:" in text
    assert "percentile bootstrap over 3 patients" in text
    assert (out / "best" / "config.json").is_file() and (out / "latents" / "latents.npy").is_file()
    metrics = json.loads((out / "test_metrics.json").read_text())
    assert set(metrics) == {"mae", "rmse", "r2", "bias"}
    # a cache given with --latents is reused (no VAE needed)
    assert main(["train", "ef", "--data", str(micro_ws / "data"), "--latents", str(out / "latents"),
                 "--out", str(tmp_path / "ef2"), *MICRO_ARGS]) == 0
    assert main(["train", "ef", "--data", str(micro_ws / "data"), "--latents", str(tmp_path / "none"),
                 "--out", str(tmp_path / "ef3")]) == 2
    assert "give --vae to encode" in capsys.readouterr().err


def test_eval_utility_and_ef_agreement_end_to_end(micro_ws, tmp_path, capsys):
    from echoaudit.utility_cli import main

    out = tmp_path / "u"
    argv = ["eval", "utility", "--workspace", str(micro_ws), "--set", "syn", "--out", str(out), "--seeds", "2", *MICRO_ARGS]
    assert main(argv) == 0
    text = capsys.readouterr().out
    for label in ("(a) real TRAIN", "(b) synthetic", "(c) synthetic minus flagged", "(d) random subset", "(e) real TRAIN + synthetic"):
        assert label in text
    assert "Trained on synthetic, the EF model is" in text and "2 flagged videos left out of (c)" in text
    assert "EF agreement of the generator" in text
    rec = json.loads((out / "utility.json").read_text())
    assert rec["flagged"] == ["SYN_0", "SYN_2"] and rec["test"] == {"videos": 6, "patients": 3}
    assert len(rec["runs"]) == 10 and {r["arm"] for r in rec["runs"]} == set(ARMS)
    assert rec["sets"]["synthetic_random"]["n_synthetic"] == 4 and rec["sets"]["real_plus_synthetic"]["n_real"] == 16
    assert len({r["seconds"] for r in rec["runs"]}) > 1
    table = pd.read_csv(out / "utility.csv")
    assert table["arm"].tolist() == list(ARMS) and (table["seeds"] == 2).all()
    assert table.loc[0, "n_train"] == 16 and table.loc[2, "n_train"] == 4
    preds = pd.read_csv(out / "utility_predictions.csv")
    assert len(preds) == 5 * 2 * 6 and set(preds["PatientID"]) == {"P10", "P11", "P12"}
    assert (out / "utility_by_ef.csv").is_file() and rec["ef_agreement"]["n"] == 6
    # every run finished: a second call reuses them (same numbers, no training)
    stamp = (out / "runs" / "real" / "seed0" / "best" / "config.json").stat().st_mtime_ns
    assert main(argv) == 0
    capsys.readouterr()
    assert (out / "runs" / "real" / "seed0" / "best" / "config.json").stat().st_mtime_ns == stamp
    assert pd.read_csv(out / "utility.csv")["mae"].tolist() == pytest.approx(table["mae"].tolist())
    # other flags (a --flags file) change set (c): its finished runs are not reused silently
    pd.DataFrame({"FileName": ["SYN_1"]}).to_csv(tmp_path / "flags.csv", index=False)
    assert main(argv + ["--flags", str(tmp_path / "flags.csv")]) == 2
    assert "other settings or other videos" in capsys.readouterr().err
    # EF agreement with the utility's real-trained model
    model = out / "runs" / "real" / "seed0" / "best"
    assert main(["eval", "ef-agreement", "--workspace", str(micro_ws), "--set", "syn", "--out", str(tmp_path / "a"),
                 "--ef-model", str(model), "--n-boot", "50"]) == 0
    text = capsys.readouterr().out
    assert "Pearson r" in text and "MAE:" in text
    agree = pd.read_csv(tmp_path / "a" / "ef_agreement.csv")
    assert len(agree) == 6 and {"EF_requested", "EF_predicted"} <= set(agree.columns)
    # an unknown set is one clear line
    assert main(["eval", "utility", "--workspace", str(micro_ws), "--set", "nope", "--out", str(out)]) == 2
    assert "no synthetic set 'nope'" in capsys.readouterr().err


def test_register_adds_to_existing_train_and_eval_parsers():
    import argparse

    from echoaudit.utility_cli import register

    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train").add_subparsers(dest="model", required=True)
    tr.add_parser("vae")
    ev = sub.add_parser("eval").add_subparsers(dest="model", required=True)
    register(tr, ev)
    a = p.parse_args(["train", "ef", "--data", "d", "--out", "o", "--epochs", "3", "--seed", "2"])
    assert a.model == "ef" and a.epochs == 3 and a.seed == 2 and a.func.__name__ == "cmd_train_ef"
    a = p.parse_args(["eval", "utility", "--workspace", "w", "--set", "s", "--out", "o"])
    assert a.seeds == 3 and a.func.__name__ == "cmd_eval_utility"
    a = p.parse_args(["eval", "ef-agreement", "--workspace", "w", "--set", "s", "--out", "o", "--ef-model", "m"])
    assert a.model == "ef-agreement" and str(a.ef_model) == "m"  # the sub-subparser's dest stays intact
