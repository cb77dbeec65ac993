"""A workspace build as a background job the dashboard can watch.

The demo build takes minutes on a CPU; the dashboard should not wait for it. A build runs
in its own process (``echoaudit demo``) and reports through two files in the workspace
folder:

    .build.lock        held (fcntl.flock) by the one process building this folder
    build_status.json  state, fraction done, message, pid, start and update times
    build.log          the build's console output (when started in the background)

``start_demo_build`` starts the process (the README's first command and the dashboard's
build button both use it), ``read_status`` tells anyone how far it got: ``running``,
``done``, ``failed`` (with the error), or ``interrupted`` (the status says running but no
process holds the lock: killed; starting again resumes). Only the standard library is
imported here, so the launcher and the dashboard's polling stay cheap.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from echoaudit.errors import EchoAuditError
from echoaudit.fileio import read_json, write_json

__all__ = ["STATUS", "LOCK", "LOG", "StatusWriter", "build_lock", "is_building", "read_status",
           "start_demo_build", "manifest_state"]

STATUS = "build_status.json"
LOCK = ".build.lock"
LOG = "build.log"

# The keys of a status and their types; read_status drops a key of another type.
_STATUS_TYPES = {"state": str, "message": str, "error": str, "pid": int, "fraction": (int, float),
                 "started": (int, float), "updated": (int, float), "seconds": (int, float)}


@contextmanager
def build_lock(root: str | Path) -> Iterator[None]:
    """Hold the build lock of ``root`` (created if missing) for the duration of the block.

    Raises EchoAuditError when another process holds it. The lock is an flock on an open
    file: it is released when this process ends, however it ends.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            st = read_status(root) or {}
            raise EchoAuditError(
                f"another build is running in {root} (pid {st.get('pid', '?')}); follow it on the dashboard's "
                f"Home page or in {root / LOG}") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def is_building(root: str | Path) -> bool:
    """True while some process holds the build lock of ``root``."""
    path = Path(root) / LOCK
    if not path.is_file():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def read_status(root: str | Path) -> dict | None:
    """The build status of ``root`` (None if no build ever reported there).

    Keys: state (running / done / failed / interrupted), fraction (0..1), message, pid,
    started and updated (unix seconds), error (for failed). A status that says running
    while no process holds the lock is reported as ``interrupted``.

    A status file that is missing or damaged (not UTF-8, not JSON, not an object) is no
    status: None, as before any build (the next build rewrites it). A key of the wrong
    type (a fraction that is a string, say) is left out.
    """
    path = Path(root) / STATUS
    try:
        status = read_json(path, what="build status", expect=dict)
    except EchoAuditError:
        return None
    status = {k: v for k, v in status.items()
              if k not in _STATUS_TYPES or (isinstance(v, _STATUS_TYPES[k]) and not isinstance(v, bool))}
    if "fraction" in status:
        status["fraction"] = min(1.0, max(0.0, float(status["fraction"])))
    if status.get("state") == "running" and not is_building(root):
        status["state"] = "interrupted"
    return status


def manifest_state(root: str | Path) -> str:
    """``missing`` (no manifest: nothing usable yet), ``partial`` (usable; synthetic sets
    still to be made) or ``complete``. Reads the JSON only: no heavy imports."""
    path = Path(root) / "manifest.json"
    try:
        manifest = read_json(path, what="workspace manifest", expect=dict)
    except EchoAuditError:  # missing or damaged: not usable (Workspace says why)
        return "missing"
    return "partial" if manifest.get("pending") or manifest.get("utility_pending") else "complete"


class StatusWriter:
    """A ``progress(fraction, message)`` callback that also writes ``build_status.json``
    (atomically, at most every ``interval`` seconds unless the message's stage changes)."""

    def __init__(self, root: str | Path, *, interval: float = 0.5,
                 forward: Callable[[float, str], None] | None = None):
        self.root = Path(root)
        self.interval = interval
        self.forward = forward
        self.started = time.time()
        self._last = 0.0
        self._stage = None
        self.status = {"state": "running", "fraction": 0.0, "message": "starting", "pid": os.getpid(),
                       "started": self.started, "updated": self.started}
        self._write()

    def _write(self) -> None:
        self.status["updated"] = time.time()
        write_json(self.root / STATUS, self.status)
        self._last = time.monotonic()

    def __call__(self, fraction: float, message: str) -> None:
        self.status["fraction"] = round(float(min(1.0, max(0.0, fraction))), 4)
        self.status["message"] = message
        stage = message.split(":", 1)[0]
        if stage != self._stage or time.monotonic() - self._last >= self.interval:
            self._stage = stage
            self._write()
        if self.forward is not None:
            self.forward(fraction, message)

    def done(self, message: str = "workspace ready") -> None:
        self.status.update(state="done", fraction=1.0, message=message, seconds=round(time.time() - self.started, 1))
        self._write()

    def failed(self, exc: BaseException) -> None:
        self.status.update(state="failed", error=str(exc) or type(exc).__name__)
        self._write()


def start_demo_build(root: str | Path, *, assets: str | Path | None = None) -> bool:
    """Start ``echoaudit demo --workspace root`` as a background process, its output in
    ``root/build.log``. Returns False (and starts nothing) when a build already runs there.

    The process stays in the caller's process group, so Ctrl-C in the terminal that
    started the dashboard stops it too; the next start resumes where it stopped.
    """
    root = Path(root).resolve()
    if is_building(root):
        return False
    root.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "echoaudit.cli", "demo", "--workspace", str(root)]
    if assets is not None:
        cmd += ["--assets", str(Path(assets).resolve())]
    with open(root / LOG, "ab") as log:
        subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         cwd=Path(__file__).resolve().parents[1])
    # Wait until the child holds the lock (or gave up), so a second caller sees it running.
    deadline = time.time() + 30
    while time.time() < deadline and not is_building(root):
        status = read_status(root)
        if status and status.get("state") == "failed" and status.get("started", 0) > time.time() - 30:
            break
        time.sleep(0.05)
    return True


def main(argv: list[str] | None = None) -> int:
    """``python -m echoaudit.buildjob start-demo ROOT``: start the demo build unless the
    workspace is complete or a build is running (used by scripts/demo.sh; stdlib only)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m echoaudit.buildjob")
    ap.add_argument("action", choices=["start-demo", "status"])
    ap.add_argument("root", type=Path)
    args = ap.parse_args(argv)
    if args.action == "status":
        print(json.dumps({"manifest": manifest_state(args.root), "build": read_status(args.root)}, indent=1))
        return 0
    state = manifest_state(args.root)
    if state == "complete":
        return 0
    if start_demo_build(args.root):
        print(f"building the demo workspace in the background ({'resuming' if state == 'partial' else 'first start'}); "
              f"progress on the dashboard's Home page and in {args.root / LOG}")
    else:
        print(f"a build is already running in {args.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
