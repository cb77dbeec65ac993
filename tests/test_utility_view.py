"""The standard place of the utility results, their reader, and the report's utility
section: absent, good (from the micro end-to-end command and from the library's own
tables), damaged."""

from __future__ import annotations

import html as html_mod
import json
import shutil

import pandas as pd
import pytest
from test_utility import MICRO_ARGS, micro_ws  # noqa: F401  (the module-scoped micro workspace fixture)
from utility_fixtures import write_fake_utility

from echoaudit.audit.utility import ARMS
from echoaudit.errors import ConfigError, EchoAuditError
from echoaudit.utility_view import (
    display_table,
    utility_command,
    utility_folder,
    utility_results,
)


def test_absent_results_are_none_and_the_command_is_given(tmp_path):
    assert utility_results(tmp_path, "syn") is None
    (tmp_path / "utility" / "syn").mkdir(parents=True)  # an empty folder: still nothing computed
    assert utility_results(tmp_path, "syn") is None
    assert utility_folder(tmp_path, "syn") == tmp_path / "utility" / "syn"
    assert utility_command("/w s", "syn") == "echoaudit eval utility --workspace '/w s' --set syn"
    with pytest.raises(EchoAuditError, match="cannot name a results folder"):
        utility_folder(tmp_path, "../x")


def test_good_results_read_back(tmp_path):
    want = write_fake_utility(utility_folder(tmp_path, "syn"))
    res = utility_results(tmp_path, "syn")
    assert res["sentence"] == want["sentence"] and res["sentence"].startswith("Trained on synthetic, the EF model is")
    assert res["table"]["arm"].tolist() == list(ARMS)
    assert res["table"]["mae"].tolist() == pytest.approx(want["table"]["mae"].tolist())
    assert set(res["by_ef"]["arm"]) == set(ARMS)
    assert res["agreement"]["mae"]["value"] == pytest.approx(want["agreement"]["mae"]["value"])
    assert len(res["agreement_points"]) == 10 and res["agreement"]["n"] == 10
    shown = display_table(res["table"])
    assert len(shown) == 5 and shown.loc[0, "MAE vs real (EF points)"] == "reference"
    r = want["table"].iloc[1]
    assert shown.loc[1, "MAE (EF points)"] == f"{r['mae']:.1f} [{r['mae_low']:.1f}, {r['mae_high']:.1f}]"
    assert shown.loc[1, "MAE vs real (EF points)"].startswith(f"{r['mae_vs_reference']:+.1f} [")
    assert shown.loc[1, "R^2"].count("[") == 1 and shown.loc[1, "videos"] == 30


def test_damaged_results_are_clear_errors(tmp_path):
    folder = utility_folder(tmp_path, "syn")
    write_fake_utility(folder)
    (folder / "utility.json").write_text("{not json")
    with pytest.raises(ConfigError, match="utility results .* is not valid JSON"):
        utility_results(tmp_path, "syn")
    write_fake_utility(folder)
    (folder / "utility.csv").unlink()
    with pytest.raises(EchoAuditError, match="utility table .*utility.csv' is missing"):
        utility_results(tmp_path, "syn")
    write_fake_utility(folder)
    pd.read_csv(folder / "utility_by_ef.csv").drop(columns="mae").to_csv(folder / "utility_by_ef.csv", index=False)
    with pytest.raises(EchoAuditError, match=r"lacks the column\(s\) \['mae'\]"):
        utility_results(tmp_path, "syn")
    write_fake_utility(folder)
    t = pd.read_csv(folder / "utility.csv")
    t["mae"] = "lots"
    t.to_csv(folder / "utility.csv", index=False)
    with pytest.raises(EchoAuditError, match="column 'mae' holds non-numbers"):
        utility_results(tmp_path, "syn")
    write_fake_utility(folder)
    rec = json.loads((folder / "utility.json").read_text())
    rec["ef_agreement"]["mae"]["value"] = "x"
    (folder / "utility.json").write_text(json.dumps(rec))
    with pytest.raises(EchoAuditError, match="mae: value is 'x', not a number"):
        utility_results(tmp_path, "syn")


def test_eval_utility_writes_to_the_workspace_by_default(micro_ws, capsys):  # noqa: F811
    from echoaudit.utility_cli import main

    folder = micro_ws / "utility" / "syn"
    shutil.rmtree(folder, ignore_errors=True)
    assert main(["eval", "utility", "--workspace", str(micro_ws), "--set", "syn", "--seeds", "1", *MICRO_ARGS]) == 0
    assert str(folder) in capsys.readouterr().out
    res = utility_results(micro_ws, "syn")
    assert res["folder"] == folder and res["table"]["arm"].tolist() == list(ARMS)
    assert res["sentence"].startswith("Trained on synthetic") and len(res["table"]) == 5
    assert res["agreement"]["n"] == 6 and sorted(res["agreement_points"]["FileName"]) == [f"SYN_{i}" for i in range(6)]
    # eval ef-agreement lands in the same place, and its numbers are then the ones shown
    model = folder / "runs" / "real" / "seed0" / "best"
    assert main(["eval", "ef-agreement", "--workspace", str(micro_ws), "--set", "syn", "--ef-model", str(model),
                 "--n-boot", "30"]) == 0
    capsys.readouterr()
    assert (folder / "ef_agreement.json").is_file()
    res2 = utility_results(micro_ws, "syn")
    assert "(30x)" in res2["agreement"]["mae"]["rule"]  # from ef_agreement.json, not utility.json (50x)
    assert res2["table"] is not None


@pytest.fixture(scope="module")
def ws_copy(tiny_workspace, tmp_path_factory):
    from echoaudit.workspace import Workspace

    root = tmp_path_factory.mktemp("utility_report") / "ws"
    shutil.copytree(tiny_workspace, root)
    return Workspace(root)


def test_report_has_a_utility_section_only_when_results_exist(ws_copy, tmp_path):
    from echoaudit import report_files as RF

    name = ws_copy.synthetic_names[0]
    paths = RF.write_report(ws_copy, tmp_path / "without", synthetic=name, png=False)
    text = paths["html"].read_text()
    assert "Downstream utility" not in text and "table_utility" not in paths
    assert json.loads(paths["summary"].read_text())["utility"] is None

    want = write_fake_utility(utility_folder(ws_copy.root, name), name)
    paths = RF.write_report(ws_copy, tmp_path / "with", synthetic=name, png=False)
    text = paths["html"].read_text()
    assert "<h2>Downstream utility (EF model)</h2>" in text
    assert html_mod.escape(want["sentence"]) in text and "(e) real TRAIN + synthetic" in text
    assert html_mod.escape(want["agreement"]["sentence"]) in text and 'id="fig-utility_by_ef"' in text
    assert pd.read_csv(paths["table_utility"])["arm"].tolist() == list(ARMS)
    summary = json.loads(paths["summary"].read_text())
    assert summary["utility"]["sentence"] == want["sentence"] and len(summary["utility"]["table"]) == 5

    (utility_folder(ws_copy.root, name) / "utility.csv").unlink()  # damaged: a note, the report still written
    paths = RF.write_report(ws_copy, tmp_path / "damaged", synthetic=name, png=False)
    assert "downstream-utility results could not be read" in paths["html"].read_text()
    shutil.rmtree(utility_folder(ws_copy.root, name))
