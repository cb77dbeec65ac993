"""The phantom demo: a workspace built from the checkpoints shipped in ``assets/``.

``assets/demo.json`` records the phantom data set the checkpoints were trained on, so the
demo regenerates exactly that data (same seed, same bytes) instead of shipping videos;
then ``create_workspace`` indexes it, scores held-out videos and audits the two demo
generators (a regular one and a deliberately memorizing one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from echoaudit.build import BuildConfig, create_workspace
from echoaudit.engine import EngineConfig
from echoaudit.errors import EchoAuditError
from echoaudit.workspace import Workspace

__all__ = ["default_assets", "build_demo_workspace"]


def default_assets() -> Path:
    return Path(__file__).resolve().parents[1] / "assets"


def build_demo_workspace(root: str | Path = "demo_workspace", *, assets: str | Path | None = None,
                         rebuild: bool = False, progress: Callable[[float, str], None] | None = None) -> Workspace:
    """Open ``root`` if it already holds a workspace; else build the demo there."""
    from echoaudit.data.phantom import PhantomConfig, generate_phantom

    root = Path(root)
    if Workspace.exists(root) and not rebuild:
        return Workspace(root)
    assets = Path(assets) if assets else default_assets()
    spec_path = assets / "demo.json"
    if not spec_path.is_file():
        raise EchoAuditError(f"no demo checkpoints in {assets} (demo.json missing); train them with scripts/train_demo_assets.sh")
    spec = json.loads(spec_path.read_text())
    pcfg = PhantomConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec["phantom"].items()})
    data = root / "data" / pcfg.view
    if not (data / "FileList.csv").exists():
        generate_phantom(data, pcfg, workers=2,
                         progress=None if progress is None else lambda f, m: progress(0.05 * f, f"phantom data: {m}"))
    b = spec.get("build", {})
    cfg = BuildConfig(**{k: v for k, v in b.items() if k != "engine"}, engine=EngineConfig(**b.get("engine", {})))
    gens = {name: assets / rel for name, rel in spec["generators"].items()}
    return create_workspace(root, data=data, vae=assets / spec["vae"], reid=assets / spec["reid"], generators=gens,
                            cfg=cfg, note={"demo": spec.get("notes", {})}, progress=progress)
