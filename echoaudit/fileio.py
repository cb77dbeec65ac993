"""Atomic writes: a reader never sees a half-written file, and a failed write leaves
what was there before untouched (write to a temporary name beside it, then rename).
A writer killed mid-write leaves only its temporary behind, and the next writer into that
folder removes it (:func:`remove_stale_temps`).

Strict readers for what the project writes and users may have damaged: :func:`read_json`
(manifests, configs, index records) and :func:`read_safetensors_header` (weights). Every
failure is one project error that names the file and what is wrong with it."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import re
import shutil
import socket
import struct
import tempfile
from pathlib import Path
from typing import Iterator

from echoaudit.errors import CheckpointError, ConfigError, EchoAuditError

__all__ = [
    "atomic_path", "atomic_dir", "remove_stale_temps", "remove_tree", "is_temp_name", "write_json", "write_text",
    "read_json", "read_safetensors_header", "sha256_file", "sha256_tree", "model_fingerprint", "JSON_MAX_BYTES",
]

#: Largest JSON file :func:`read_json` accepts by default: manifests and configs are
#: kilobytes, and a multi-GB "config" would be read into memory whole.
JSON_MAX_BYTES = 16 * 2**20
# Integers beyond int64 overflow numpy / torch later, far from the file that held them.
_JSON_INT_LIMIT = 2**63
# A safetensors header lists tensor names, dtypes and shapes: kilobytes to a few MB.
_SAFETENSORS_MAX_HEADER = 100 * 2**20
_SAFETENSORS_ITEMSIZE = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp / mkdtemp create private (0600 / 0700) entries; the final file gets the mode a
# plain open() would have given it, so reports and checkpoints can be shared.
_FILE_MODE = 0o666 & ~_umask()
_DIR_MODE = 0o777 & ~_umask()


# Temporary names carry the writer's host and pid: ``.<name>.tmp-<host>-<pid>-<random>``.
# A process killed (SIGKILL, power loss) between creating one and renaming it leaves it
# behind; the next atomic write into the same folder by another process on this host
# removes those whose process is gone (:func:`remove_stale_temps`).
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
_TEMP_RE = re.compile(r"^\..*\.tmp-(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-")
_swept: set[str] = set()  # folders this process has already swept


def _temp_prefix(name: str) -> str:
    return f".{name}.tmp-{_HOST}-{os.getpid()}-"


def is_temp_name(name: str) -> bool:
    """True for the name of a temporary file or folder made by :func:`atomic_path` /
    :func:`atomic_dir` (a leftover when its process is gone)."""
    return _TEMP_RE.match(name) is not None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # exists (another user's), or not a pid we can judge: leave it
    return True


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files and folders that atomic writers on this host left in
    ``folder`` (not below it) when they were killed mid-write: those whose process no
    longer runs. Entries of running processes, of other hosts (a shared file system) and
    anything not named like a temporary are left alone. Returns what was removed."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP_RE.match(entry.name)
        if m is None or m["host"] != _HOST:
            continue
        pid = int(m["pid"])
        if pid == os.getpid() or _alive(pid):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except FileNotFoundError:
            continue  # another process cleaned it first
        except OSError:
            continue  # not ours to remove after all (permissions): leave it
        removed.append(Path(entry.path))
    return removed


def _sweep_once(folder: Path) -> None:
    """:func:`remove_stale_temps` on ``folder``, the first time this process writes there
    (a folder of many videos is listed once, not once per video)."""
    key = os.path.abspath(folder)
    if key not in _swept:
        _swept.add(key)
        remove_stale_temps(folder)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_renameat2 = None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``).
    False when the system or file system cannot (the caller falls back to two renames)."""
    global _renameat2
    if _renameat2 is None:
        try:
            import ctypes

            _renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
        except (OSError, AttributeError):
            _renameat2 = False
    if _renameat2 is False:
        return False
    import ctypes

    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path beside ``path``; on success rename it onto ``path``.

    The suffix is kept so that writers which pick a format by extension still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_once(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path.stem), suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` whole.

    An existing ``path`` is swapped with the new folder in one step where the system can
    (Linux renameat2), so a reader, or a process killed at any moment, finds the old
    folder or the new one at ``path``, never none; elsewhere the old folder is renamed
    aside first (a short window without ``path``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_once(path.parent)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path.name), dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, _DIR_MODE)
        if os.path.lexists(path) and _exchange(tmp, path):
            shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old folder
        else:
            old = None
            if os.path.lexists(path):
                old = tmp.with_name(tmp.name + ".old")
                os.replace(path, old)
            os.replace(tmp, path)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def remove_tree(path: str | os.PathLike) -> None:
    """Delete a folder (or file) so that it disappears in one step: it is renamed to a
    temporary name first, so a process killed while deleting leaves a temporary that the
    next writer into the folder removes, not a half-deleted folder under the old name."""
    path = Path(path)
    if not os.path.lexists(path):
        return
    aside = path.with_name(f"{_temp_prefix(path.name)}{os.urandom(4).hex()}")
    os.replace(path, aside)
    if aside.is_dir() and not aside.is_symlink():
        shutil.rmtree(aside, ignore_errors=True)
    else:
        aside.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON (only finite numbers are allowed)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is too large (it overflows to infinity)")
    return value


def _bounded_int(text: str) -> int:
    value = int(text)
    if not -_JSON_INT_LIMIT <= value < _JSON_INT_LIMIT:
        raise ValueError(f"integer {text[:40]}{'...' if len(text) > 40 else ''} ({len(text)} digits) is outside the 64-bit range")
    return value


def _type_name(value) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "true/false", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def read_json(
    path: str | os.PathLike,
    *,
    what: str = "JSON file",
    expect: type | tuple[type, ...] | None = dict,
    max_bytes: int = JSON_MAX_BYTES,
    error: type[EchoAuditError] = ConfigError,
):
    """Read a JSON file strictly; any problem is one ``error`` naming the file.

    Refused, each with its own message: a missing or unreadable file; more than
    ``max_bytes`` bytes (checked before reading); bytes that are not UTF-8 (a leading BOM
    is accepted); invalid JSON (line and column given); NaN / Infinity, floats that
    overflow (1e400) and integers outside the 64-bit range; nesting too deep for Python's
    parser; lone UTF-16 surrogates in strings (they cannot be written back or used as
    paths); a top-level value that is not an ``expect`` (default: an object).

    Args:
        path: the file.
        what: how messages name it, e.g. "workspace manifest".
        expect: type(s) the top-level value must have; None accepts any.
        max_bytes: largest file size accepted.
        error: the exception raised (a subclass of EchoAuditError).

    Returns:
        The parsed value (dict, list, str, int, float, bool or None).
    """
    path = Path(path)
    where = f"{what} {str(path)!r}"
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise error(f"{where} is not a file")
        if size > max_bytes:
            raise error(f"{where} is {size} bytes; the limit for this file is {max_bytes} bytes")
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{where} does not exist") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise error(f"{where} cannot be read ({getattr(exc, 'strerror', None) or exc})") from exc
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{where} is not UTF-8 text (byte {exc.start} is {data[exc.start:exc.start + 1]!r})") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_bounded_int)
        # Lone surrogates ("\ud800") parse, but fail later when written or used as a path.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except json.JSONDecodeError as exc:
        raise error(f"{where} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except RecursionError:
        raise error(f"{where} is nested too deeply to be a {what}") from None
    except UnicodeEncodeError:
        raise error(f"{where} holds a string with an unpaired UTF-16 surrogate (\\ud800-\\udfff)") from None
    except ValueError as exc:  # from the number hooks, or Python's limit on integer digits
        raise error(f"{where}: {str(exc).split(';')[0]}") from None
    if expect is not None and not isinstance(value, expect):
        wanted = " or ".join(_type_name(t()) for t in (expect if isinstance(expect, tuple) else (expect,)))
        raise error(f"{where} must hold {wanted} at the top level; it holds {_type_name(value)}")
    return value


def read_safetensors_header(path: str | os.PathLike, *, error: type[EchoAuditError] = CheckpointError) -> dict:
    """The header of a ``.safetensors`` file, checked against the file's size, without
    reading the tensors.

    Format: 8 bytes little-endian header length N, N bytes of JSON
    ``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``,
    then the tensor bytes; ``end - begin`` must be ``prod(shape) * itemsize(dtype)`` and
    every range must lie inside the file.

    Returns:
        {tensor name: {"dtype": str, "shape": [int], "data_offsets": [int, int]}}
        (``__metadata__`` left out).
    Raises:
        ``error`` naming the file: missing, unreadable, truncated, or a header that is not
        JSON or disagrees with the file (the first problem found).
    """
    path = Path(path)
    where = f"weights file {str(path)!r}"
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise error(f"{where} is truncated ({size} bytes; a safetensors file starts with an 8-byte header length)")
            (n,) = struct.unpack("<Q", head)
            if n > min(_SAFETENSORS_MAX_HEADER, size - 8):
                raise error(f"{where} is truncated or corrupt: its header claims {n} bytes, the file has {size}")
            raw = f.read(n)
    except FileNotFoundError:
        raise error(f"{where} does not exist") from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise error(f"{where} cannot be read ({getattr(exc, 'strerror', None) or exc})") from exc
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise error(f"{where} is corrupt: its header is not valid JSON ({str(exc)[:120]})") from None
    if not isinstance(header, dict):
        raise error(f"{where} is corrupt: its header is {_type_name(header)}, not an object")
    data_size = size - 8 - n
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        ok = isinstance(info, dict) and info.get("dtype") in _SAFETENSORS_ITEMSIZE
        shape, offsets = (info.get("shape"), info.get("data_offsets")) if ok else (None, None)
        ok = ok and isinstance(shape, list) and all(type(s) is int and s >= 0 for s in shape)
        ok = ok and isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
        if not ok:
            raise error(f"{where} is corrupt: tensor {str(name)[:80]!r} has no valid dtype / shape / data_offsets")
        begin, end = offsets
        if not 0 <= begin <= end <= data_size:
            raise error(f"{where} is truncated or corrupt: tensor {str(name)[:80]!r} lies at bytes {begin}..{end} "
                        f"of a {data_size}-byte data section")
        if end - begin != math.prod(shape) * _SAFETENSORS_ITEMSIZE[info["dtype"]]:
            raise error(f"{where} is corrupt: tensor {str(name)[:80]!r} of shape {shape} ({info['dtype']}) "
                        f"does not fill its {end - begin} bytes")
        tensors[name] = info
    return tensors


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_tree(path: str | os.PathLike, *, include=None) -> str:
    """Hash of a file, or of every file in a folder (names and contents, sorted);
    ``include(path) -> bool`` limits which files count."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and (include is None or include(p))):
        h.update(str(f.relative_to(path)).encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()


_MODEL_FILES = {"config.json", "model_index.json", "scheduler_config.json"}
# .pth / .pt / .bin: the published formats' torch state dicts (read with weights_only only)
# are weights too; a folder without them hashes as before.
_WEIGHT_SUFFIXES = {".safetensors", ".pth", ".pt", ".bin"}


def model_fingerprint(path: str | os.PathLike) -> str:
    """Identity of a model folder: its weights (*.safetensors, and *.pth / *.pt / *.bin
    state dicts of the published formats) and configs only, so notes such as
    metrics.json or training.json beside them do not change it."""
    return sha256_tree(path, include=lambda p: p.suffix in _WEIGHT_SUFFIXES or p.name in _MODEL_FILES)


def check_model_configs(folder: str | os.PathLike, names: tuple[str, ...]) -> dict[str, dict]:
    """Read each of ``names`` (config files under ``folder``, those that exist) strictly as a
    JSON object before diffusers sees it: diffusers takes a config that is a bare string for
    the name of a model to download.

    Returns:
        {name: the parsed object} for each of ``names`` that exists, for the size checks
        of :mod:`echoaudit.models.limits`.
    Raises:
        CheckpointError: a config that is not a readable JSON object, naming the file.
    """
    configs = {}
    for name in names:
        path = Path(folder) / name
        if path.is_file():
            configs[name] = read_json(path, what=f"model config {name}", expect=dict, error=CheckpointError)
    return configs
