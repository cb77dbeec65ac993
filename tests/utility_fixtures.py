"""Small realistic utility results written the way ``echoaudit eval utility`` writes them
(the library's own table, per-bin errors, sentence and EF agreement over made-up
predictions), for the page and report tests that need results without training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from echoaudit.audit.utility import (
    ARMS,
    ef_agreement,
    errors_by_ef_bin,
    utility_sentence,
    utility_table,
)
from echoaudit.utility_view import write_utility

#: (bias, noise SD) of each arm's made-up predictions
_ARM_ERRORS = {"real": (0.0, 3.0), "synthetic": (3.0, 7.0), "synthetic_filtered": (3.5, 7.5),
               "synthetic_random": (3.2, 7.2), "real_plus_synthetic": (0.5, 3.5)}


def write_fake_utility(out: Path, set_name: str = "syn", *, n_boot: int = 100) -> dict:
    rng = np.random.default_rng(0)
    y = rng.uniform(20, 80, 24)
    pats = np.repeat([f"P{i}" for i in range(12)], 2)
    names = [f"T{i}" for i in range(24)]
    preds = {arm: np.stack([y + rng.normal(b, sd, 24) for _ in range(2)]) for arm, (b, sd) in _ARM_ERRORS.items()}
    n_train = {"real": 40, "synthetic": 30, "synthetic_filtered": 27, "synthetic_random": 27, "real_plus_synthetic": 70}
    table = utility_table(y, pats, preds, n_train, n_boot=n_boot)
    by_ef = pd.concat([errors_by_ef_bin(y, p, pats, n_boot=n_boot).assign(arm=arm) for arm, p in preds.items()],
                      ignore_index=True)
    by_ef = by_ef[["arm"] + [c for c in by_ef.columns if c != "arm"]]
    sentence = utility_sentence(table, n_patients=12)
    req = rng.uniform(20, 80, 10)
    measured = req + rng.normal(1.0, 5.0, 10)
    agreement = ef_agreement(req, measured, n_boot=n_boot)
    points = pd.DataFrame({"FileName": [f"S{i}" for i in range(10)], "EF_requested": req, "EF_predicted": measured})
    predictions = pd.concat([pd.DataFrame({"arm": arm, "seed": s, "FileName": names, "PatientID": pats, "EF": y,
                                           "EF_pred": p[s]}) for arm, p in preds.items() for s in range(2)],
                            ignore_index=True)
    record = {"set": set_name, "sentence": sentence, "table": table.to_dict(orient="records"),
              "by_ef": by_ef.to_dict(orient="records"), "ef_agreement": agreement,
              "test": {"videos": 24, "patients": 12}, "flagged": [], "runs": []}
    write_utility(out, record, table, by_ef, predictions, points)
    assert list(table["arm"]) == list(ARMS)
    return {"table": table, "sentence": sentence, "agreement": agreement}
