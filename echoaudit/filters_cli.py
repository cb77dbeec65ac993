"""``echoaudit filters add | list | compare``: a second privacy filter in a workspace
(:mod:`echoaudit.filters`) and where it disagrees with the workspace's own.

* ``filters add --workspace WS --name NAME --reid DIR [--scorer auto|published|video]``
  scores every synthetic set with the network in DIR (the published EchoNet-Synthetic
  format or the project's) and stores the verdicts in the workspace.
* ``filters list --workspace WS``: the filters, their scorer and threshold.
* ``filters compare --workspace WS --name NAME [--set S] [--threshold P] [--out CSV]``:
  the 2 x 2 table, Cohen's kappa with its bootstrap interval over synthetic videos, and
  every video only one filter flags (``--out`` writes the per-video table).
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["register", "cmd_filters_add", "cmd_filters_list", "cmd_filters_compare"]


def _progress():
    from tqdm.auto import tqdm

    bar = tqdm(total=100, desc="second filter", unit="%")

    def report(frac: float, msg: str) -> None:
        bar.n = int(round(100 * frac))
        bar.set_postfix_str(msg[:60])
        bar.refresh()

    return bar, report


def cmd_filters_add(args) -> None:
    from echoaudit.filters import add_filter
    from echoaudit.workspace import Workspace

    ws = Workspace(args.workspace)
    bar, report = _progress()
    try:
        info = add_filter(ws, args.name, args.reid, scorer=args.scorer, percentile=args.percentile, progress=report)
    finally:
        bar.close()
    flagged = None
    from echoaudit.filters import filter_verdicts

    v = filter_verdicts(ws, args.name)
    flagged = v.groupby("set")["flagged"].agg(["sum", "size"])
    print(f"filter {info['name']!r} ({info['scorer']} scorer, {info['kind']}): threshold {info['threshold']:.6f} "
          f"({info['scale']})")
    print(f"rule: {info['rule']}")
    for s, row in flagged.iterrows():
        print(f"  set {s}: {int(row['sum'])} of {int(row['size'])} synthetic videos flagged")


def cmd_filters_list(args) -> None:
    from echoaudit.filters import filter_info, filter_names
    from echoaudit.workspace import Workspace

    ws = Workspace(args.workspace)
    names = filter_names(ws)
    if not names:
        print("no second filter in this workspace (add one with `echoaudit filters add`)")
    for n in names:
        info = filter_info(ws, n)
        print(f"{n}: {info['scorer']} scorer, {info['kind']}, threshold {info['threshold']:.6f} ({info['scale']}), "
              f"sets {', '.join(info.get('sets', [])) or 'none'}")


def cmd_filters_compare(args) -> None:
    from echoaudit.audit.scale import to_logit
    from echoaudit.filters import compare_with_primary
    from echoaudit.workspace import Workspace

    ws = Workspace(args.workspace)
    sets = [args.set] if args.set else ws.synthetic_names
    for s in sets:
        agr = compare_with_primary(ws, args.name, s, args.threshold, n_boot=args.n_boot)
        if args.json:
            print(json.dumps({"set": s, "filter": args.name, **agr.to_dict()}, sort_keys=True))
            continue
        print(f"set {s}: {agr.sentence('the workspace filter', repr(args.name))}")
        for r in agr.disagreements.itertuples():
            who = "workspace filter only" if r.flagged_first else f"{args.name} only"
            print(f"  {r.query}: flagged by {who}; workspace logit {to_logit(r.score_first):.2f} "
                  f"(match {r.train_first}), {args.name} score {r.score_second:.4f} (match {r.train_second})")
        if args.out:
            from echoaudit.fileio import atomic_path

            out = Path(args.out) if len(sets) == 1 else Path(args.out).with_name(f"{Path(args.out).stem}_{s}.csv")
            with atomic_path(out) as tmp:
                agr.table.to_csv(tmp, index=False)
            print(f"  per-video table written to {out}")


def register(sub) -> None:
    """Add ``filters`` to ``sub`` (the ``add_subparsers()`` object of ``echoaudit``)."""
    fi = sub.add_parser("filters", help="a second privacy filter: add, list, compare with the workspace's own"
                        ).add_subparsers(dest="action", required=True)
    fa = fi.add_parser("add", help="score every synthetic set with another re-ID network")
    fa.add_argument("--workspace", required=True, type=Path)
    fa.add_argument("--name", required=True, help="the filter's name (letters, digits, - or _)")
    fa.add_argument("--reid", required=True, type=Path, help="a re-ID folder: the published EchoNet-Synthetic format "
                                                             "(config.json + <name>_best_network.pth) or the project's")
    fa.add_argument("--scorer", default="auto", choices=("auto", "published", "video"),
                    help="published: first frames, Pearson, their tau; video: EchoAudit's whole-video rule with this "
                         "network; auto: published for a published-format network")
    fa.add_argument("--percentile", type=float, default=95.0)
    fa.set_defaults(func=cmd_filters_add)
    fl = fi.add_parser("list", help="the workspace's second filters")
    fl.add_argument("--workspace", required=True, type=Path)
    fl.set_defaults(func=cmd_filters_list)
    fc = fi.add_parser("compare", help="agreement (Cohen's kappa) and the videos only one filter flags")
    fc.add_argument("--workspace", required=True, type=Path)
    fc.add_argument("--name", required=True, help="the second filter")
    fc.add_argument("--set", default=None, help="one synthetic set (default: every set)")
    fc.add_argument("--threshold", type=float, default=None,
                    help="the workspace filter's threshold probability (default: its calibrated one)")
    fc.add_argument("--n-boot", type=int, default=2000)
    fc.add_argument("--out", type=Path, default=None, help="write the per-video table to this CSV")
    fc.add_argument("--json", action="store_true", help="one JSON object per set instead of text")
    fc.set_defaults(func=cmd_filters_compare)
