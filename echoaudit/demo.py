"""The phantom demo: a workspace built from the checkpoints shipped in ``assets/``.

``assets/demo.json`` records the phantom data set the checkpoints were trained on, so the
demo regenerates exactly that data (same seed, same bytes) instead of shipping videos;
then ``create_workspace`` indexes it, scores held-out videos and audits the two demo
generators (a regular one and a deliberately memorizing one).
"""

from __future__ import annotations

import importlib
import threading
import time
from pathlib import Path
from typing import Callable

from echoaudit.errors import ConfigError, EchoAuditError
from echoaudit.fileio import read_json
from echoaudit.workspace import Workspace

__all__ = ["default_assets", "build_demo_workspace", "read_spec"]


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
    from echoaudit.data.phantom import generate_phantom

    if Workspace.exists(root) and not rebuild:
        from echoaudit.build import complete_workspace

        ws = Workspace(root)  # the real-data part is done: make the pending synthetic sets
        return complete_workspace(ws, progress=lambda f, m: progress(0.5 + 0.5 * f, m))
    assets = Path(assets) if assets else default_assets()
    spec_path = assets / "demo.json"
    if not spec_path.is_file():
        raise EchoAuditError(f"no demo checkpoints in {assets} (demo.json missing); train them with scripts/train_demo_assets.sh")
    spec, pcfg = read_spec(spec_path)
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
    try:
        cfg = BuildConfig(**{k: v for k, v in b.items() if k != "engine"}, engine=EngineConfig(**b.get("engine", {})))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"demo spec {str(spec_path)!r}: build is not a build config ({exc})") from None
    gens = {name: assets / rel for name, rel in spec["generators"].items()}
    return create_workspace(root, data=data, vae=assets / spec["vae"], reid=assets / spec["reid"], generators=gens,
                            cfg=cfg, note={"demo": spec.get("notes", {})}, timings=timings,
                            progress=lambda f, m: progress(0.1 + 0.9 * f, m))


def read_spec(path: str | Path):
    """``demo.json`` read strictly: (the spec, its PhantomConfig). The spec holds phantom
    and build objects, vae / reid folder names and a generators object of names to
    folders (relative to the assets folder).

    Raises:
        ConfigError: the file is not a readable JSON object, or a key is missing or of
            the wrong type (the message names the file and the key).
    """
    from echoaudit.data.phantom import PhantomConfig

    path = Path(path)
    spec = read_json(path, what="demo spec", expect=dict)

    def bad(key: str, wanted: str):
        return ConfigError(f"demo spec {str(path)!r}: {key} must be {wanted}; got {str(spec.get(key))[:80]}")

    if not isinstance(spec.get("phantom"), dict):
        raise bad("phantom", "an object (the phantom data set's settings)")
    for key in ("vae", "reid"):
        if not isinstance(spec.get(key), str) or not spec[key]:
            raise bad(key, "a folder name under the assets folder")
    gens = spec.get("generators")
    if not isinstance(gens, dict) or not all(isinstance(v, str) and v for v in gens.values()):
        raise bad("generators", "an object of generator names to folders")
    if not isinstance(spec.get("build", {}), dict) or not isinstance(spec.get("build", {}).get("engine", {}), dict):
        raise bad("build", "an object (with an optional engine object)")
    try:
        pcfg = PhantomConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec["phantom"].items()})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"demo spec {str(path)!r}: phantom is not a phantom data set config ({exc})") from None
    return spec, pcfg
