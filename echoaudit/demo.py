"""The phantom demo: a workspace built from the checkpoints shipped in ``assets/``.

``assets/demo.json`` records the phantom data set the checkpoints were trained on, so the
demo regenerates exactly that data (same seed, same bytes) instead of shipping videos;
then ``create_workspace`` indexes it, scores held-out videos and audits the two demo
generators (a regular one and a deliberately memorizing one).
"""

from __future__ import annotations

import importlib
import json
import threading
import time
from pathlib import Path
from typing import Callable

from echoaudit.errors import EchoAuditError
from echoaudit.workspace import Workspace

__all__ = ["default_assets", "build_demo_workspace"]


def default_assets() -> Path:
    return Path(__file__).resolve().parents[1] / "assets"


def build_demo_workspace(root: str | Path = "demo_workspace", *, assets: str | Path | None = None,
                         rebuild: bool = False, progress: Callable[[float, str], None] | None = None) -> Workspace:
    """Open ``root`` if it already holds a complete workspace; else build the demo there
    (or finish it: a workspace whose synthetic sets are pending gets them).

    The build holds ``root``'s build lock and reports to ``root/build_status.json``
    (see ``echoaudit.buildjob``), so the dashboard can follow a build started elsewhere;
    a second build of the same folder is refused while one runs.
    """
    from echoaudit.buildjob import StatusWriter, build_lock

    root = Path(root)
    if Workspace.exists(root) and not rebuild and Workspace(root).complete:
        return Workspace(root)
    with build_lock(root):
        status = StatusWriter(root, forward=progress)
        try:
            ws = _build(root, assets=assets, rebuild=rebuild, progress=status)
        except BaseException as exc:
            status.failed(exc if isinstance(exc, Exception) else EchoAuditError("the build was stopped"))
            raise
        status.done()
        return ws


def _build(root: Path, *, assets, rebuild: bool, progress) -> Workspace:
    from echoaudit.data.phantom import PhantomConfig, generate_phantom

    if Workspace.exists(root) and not rebuild:
        from echoaudit.build import complete_workspace

        ws = Workspace(root)  # the real-data part is done: make the pending synthetic sets
        return complete_workspace(ws, progress=lambda f, m: progress(0.5 + 0.5 * f, m))
    assets = Path(assets) if assets else default_assets()
    spec_path = assets / "demo.json"
    if not spec_path.is_file():
        raise EchoAuditError(f"no demo checkpoints in {assets} (demo.json missing); train them with scripts/train_demo_assets.sh")
    spec = json.loads(spec_path.read_text())
    pcfg = PhantomConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec["phantom"].items()})
    data = root / "data" / pcfg.view
    # torch and diffusers take seconds to import: do it while the phantom workers render.
    warm = threading.Thread(target=importlib.import_module, args=("echoaudit.build",), daemon=True)
    warm.start()
    timings = {}
    if not (data / "FileList.csv").exists():
        t0 = time.time()
        generate_phantom(data, pcfg, workers=2, progress=lambda f, m: progress(0.1 * f, f"phantom data: {m}"))
        timings["phantom"] = round(time.time() - t0, 2)
    progress(0.1, "loading the models")
    warm.join()
    from echoaudit.build import BuildConfig, create_workspace
    from echoaudit.engine import EngineConfig
    b = spec.get("build", {})
    cfg = BuildConfig(**{k: v for k, v in b.items() if k != "engine"}, engine=EngineConfig(**b.get("engine", {})))
    gens = {name: assets / rel for name, rel in spec["generators"].items()}
    return create_workspace(root, data=data, vae=assets / spec["vae"], reid=assets / spec["reid"], generators=gens,
                            cfg=cfg, note={"demo": spec.get("notes", {})}, timings=timings,
                            progress=lambda f, m: progress(0.1 + 0.9 * f, m))
