"""Synthetic-set scoring in chunks that a later run resumes (issue 16, EchoNet scale):
``audit_synthetic_set_chunked`` and ``add_synthetic_set`` on a copy of the tiny workspace."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from echoaudit.build import add_synthetic_set
from echoaudit.scoring import (
    SetAudit,
    audit_synthetic_set,
    audit_synthetic_set_chunked,
    set_audit_fingerprint,
)
from echoaudit.workspace import Workspace, load_manifest

TABLES = ("scores", "temporal", "embeddings", "first_frames")


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def setup(tiny_workspace, tmp_path_factory):
    """A private copy of the tiny workspace, one of its synthetic sets, and that set's
    one-shot audit (what every chunked result must equal)."""
    root = tmp_path_factory.mktemp("resumable") / "tiny"
    shutil.copytree(tiny_workspace.parent, root, symlinks=True)
    ws = Workspace(root / tiny_workspace.name)
    name = ws.synthetic_names[0]
    syn = ws.synthetic(name)
    top = int(ws.manifest["build"]["top"])
    reference = audit_synthetic_set(ws.engine, syn, "again", top=top, clip=ws.clip_spec)
    return ws, syn, top, reference


def assert_same(a: SetAudit, b: SetAudit) -> None:
    for k in TABLES:
        pd.testing.assert_frame_equal(getattr(a, k), getattr(b, k), check_exact=True)
    for k in ("embeddings", "first_frames"):  # lists of floats, as one-shot scoring makes them (not arrays,
        for x, y in zip(getattr(a, k)["emb"], getattr(b, k)["emb"]):  # which assert_frame_equal lets pass)
            assert type(x) is type(y) is list and type(x[0]) is type(y[0]) is float


def count_embeds(monkeypatch, engine) -> list[int]:
    """A list that grows by one each time ``engine`` VAE-encodes a video's frames (with or
    without a latent store; a video whose latents are stored is not encoded)."""
    calls = []
    original = engine.encode

    def counting(frames):
        calls.append(1)
        return original(frames)

    monkeypatch.setattr(engine, "encode", counting)
    return calls


def fingerprint(ws, syn, top, temporal=None):
    return set_audit_fingerprint(ws.engine, syn, "again", index_fingerprint=ws.manifest["index"]["fingerprint"],
                                 top=top, clip=ws.clip_spec, temporal_videos=temporal)


def test_chunked_equals_one_shot(setup, tmp_path):
    ws, syn, top, reference = setup
    assert len(syn) >= 5  # several chunks of 2, the last one short
    fp = fingerprint(ws, syn, top)
    got = audit_synthetic_set_chunked(ws.engine, syn, "again", chunk_dir=tmp_path / "p", fingerprint=fp, chunk=2,
                                      top=top, clip=ws.clip_spec)
    assert_same(got, reference)
    assert sorted(p.name for p in (tmp_path / "p").glob("chunk_*")) == [
        f"chunk_{c:06d}" for c in range(-(-len(syn) // 2))]
    # Read back from the chunks alone: the same DataFrames again (lists, dtypes, order).
    again = audit_synthetic_set_chunked(ws.engine, syn, "again", chunk_dir=tmp_path / "p", fingerprint=fp, chunk=2,
                                        top=top, clip=ws.clip_spec)
    assert_same(again, reference)

    # Temporal curves for some videos only: chunks without any still join to the one-shot table.
    some = [syn.names[-1]]
    one_shot = audit_synthetic_set(ws.engine, syn, "again", top=top, clip=ws.clip_spec, temporal_videos=some)
    fp_some = fingerprint(ws, syn, top, temporal=some)
    assert fp_some != fp
    got = audit_synthetic_set_chunked(ws.engine, syn, "again", chunk_dir=tmp_path / "p", fingerprint=fp_some,
                                      chunk=2, top=top, clip=ws.clip_spec, temporal_videos=some)
    assert_same(got, one_shot)


def test_killed_run_resumes_and_leaves_no_partial(setup, monkeypatch):
    ws, syn, _, reference = setup
    root = ws.root
    n = len(syn)
    folder = syn.root
    partial = root / "scores" / "partial" / "again"

    def stop_after_two_chunks(frac, msg):
        if msg.endswith(f" 5/{n} videos"):  # the 5th video: 2 chunks of 2 are written
            raise Stop

    with pytest.raises(Stop):
        add_synthetic_set(ws, "again", folder, chunk=2, progress=stop_after_two_chunks)
    assert sorted(p.name for p in partial.glob("chunk_*")) == ["chunk_000000", "chunk_000001"]
    manifest = load_manifest(root)
    assert "again" not in manifest["synthetic"] and "synthetic_again" not in manifest["scores"]
    assert not list((root / "scores").glob("*_again*.parquet"))

    calls = count_embeds(monkeypatch, ws.engine)
    messages = []
    add_synthetic_set(ws, "again", folder, chunk=2, progress=lambda f, m: messages.append((f, m)))
    assert len(calls) == n - 4
    assert messages[0] == (4 / n, f"resuming: 4 of {n} videos already scored")
    assert messages[-1][0] == 1.0
    assert not partial.exists() and not partial.parent.exists()

    tables = load_manifest(root)["scores"]
    assert load_manifest(root)["synthetic"]["again"]["n"] == n
    stored = {"scores": tables["synthetic_again"], "temporal": "scores/temporal_again.parquet",
              "embeddings": "scores/embeddings_again.parquet", "first_frames": tables["first_frames"]["again"]}
    assert stored["temporal"] in tables["temporal"] and stored["embeddings"] in tables["video_embeddings"]
    # The files hold what an uninterrupted scoring writes.
    for k, rel in stored.items():
        pd.testing.assert_frame_equal(pd.read_parquet(root / rel), pd.read_parquet(_roundtrip(getattr(reference, k))),
                                      check_exact=True)


def _roundtrip(df: pd.DataFrame):
    import io

    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    buf.seek(0)
    return buf


def test_chunks_of_another_fingerprint_are_discarded(setup, tmp_path, monkeypatch):
    ws, syn, top, reference = setup
    n = len(syn)
    fp_other = fingerprint(ws, syn, top + 1)

    def stop(frac, msg):
        if msg.endswith(f" 3/{n} videos"):
            raise Stop

    with pytest.raises(Stop):
        audit_synthetic_set_chunked(ws.engine, syn, "again", chunk_dir=tmp_path / "p", fingerprint=fp_other, chunk=2,
                                    top=top + 1, clip=ws.clip_spec, progress=stop)
    assert (tmp_path / "p" / "chunk_000000").is_dir()

    calls = count_embeds(monkeypatch, ws.engine)
    messages = []
    got = audit_synthetic_set_chunked(ws.engine, syn, "again", chunk_dir=tmp_path / "p",
                                      fingerprint=fingerprint(ws, syn, top), chunk=2, top=top, clip=ws.clip_spec,
                                      progress=lambda f, m: messages.append(m))
    assert len(calls) == n
    assert "discarded partial scores" in messages[0]
    assert not any(m.startswith("resuming") for m in messages)
    assert_same(got, reference)

    # A chunk of another fingerprint under the current record (copied in): not trusted either.
    fp = fingerprint(ws, syn, top)
    chunk1 = tmp_path / "p" / "chunk_000001"
    info = (chunk1 / "chunk.json").read_text()
    (chunk1 / "chunk.json").write_text(info.replace(f'"top": {top}', f'"top": {top + 1}'))
    calls.clear()
    got = audit_synthetic_set_chunked(ws.engine, syn, "again", chunk_dir=tmp_path / "p", fingerprint=fp, chunk=2,
                                      top=top, clip=ws.clip_spec)
    assert len(calls) == 2
    assert_same(got, reference)


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_damaged_chunk_is_rescored(setup, tmp_path, monkeypatch, damage):
    ws, syn, top, reference = setup
    fp = fingerprint(ws, syn, top)
    kw = {"chunk_dir": tmp_path / "p", "fingerprint": fp, "chunk": 2, "top": top, "clip": ws.clip_spec}
    audit_synthetic_set_chunked(ws.engine, syn, "again", **kw)
    f = tmp_path / "p" / "chunk_000001" / "embeddings.parquet"
    if damage == "truncated":
        data = f.read_bytes()
        f.write_bytes(data[: len(data) // 2])
    else:
        f.unlink()

    calls = count_embeds(monkeypatch, ws.engine)
    messages = []
    got = audit_synthetic_set_chunked(ws.engine, syn, "again", progress=lambda fr, m: messages.append(m), **kw)
    assert len(calls) == 2  # the two videos of chunk 1 only
    assert messages[0] == f"resuming: {len(syn) - 2} of {len(syn)} videos already scored"
    assert_same(got, reference)
