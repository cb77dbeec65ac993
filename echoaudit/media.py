"""Pictures of videos for the dashboard and the report: PNG thumbnails (data URIs for
table cells) and several videos tiled into one, side by side with captions."""

from __future__ import annotations

import base64
import io
from typing import Sequence

import numpy as np

__all__ = ["frame_to_png", "thumbnail_data_uri", "tile_videos", "video_thumbnails"]


def frame_to_png(frame: np.ndarray, size: int | None = 64) -> bytes:
    """PNG bytes of one (H, W) gray frame (float in [0, 1] or uint8), resized to ``size``."""
    from PIL import Image

    arr = np.asarray(frame)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    img = Image.fromarray(arr)
    if size is not None:
        img = img.resize((size, size), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def thumbnail_data_uri(frame: np.ndarray, size: int | None = 64) -> str:
    """``data:image/png;base64,...`` of one frame (for st.column_config.ImageColumn / HTML)."""
    return "data:image/png;base64," + base64.b64encode(frame_to_png(frame, size)).decode()


def tile_videos(videos: Sequence[np.ndarray], captions: Sequence[str], *, tile: int = 224, columns: int = 5,
                caption_px: int = 40, n_frames: int | None = None) -> np.ndarray:
    """Tile several videos into one, side by side, each with a caption band above it.

    Every video is resized to ``tile`` x ``tile`` (real and synthetic the same size) and
    looped to the first video's length (``n_frames`` overrides it): frame t of the result
    shows frame ``t mod T_i`` of video i, so all tiles restart together. Tiles fill rows
    of ``columns``; captions may hold two lines separated by a newline.

    Args:
        videos: list of (T_i, H_i, W_i) float in [0, 1] or uint8.
        captions: one string per video.

    Returns:
        (T, rows * (caption_px + tile), min(n, columns) * tile) uint8, gray.
    """
    from PIL import Image, ImageDraw, ImageFont

    from echoaudit.data.video import resize_frames, to_uint8

    if len(videos) == 0 or len(videos) != len(captions):
        raise ValueError(f"tile_videos needs one caption per video and at least one video; got "
                         f"{len(videos)} videos and {len(captions)} captions")
    T = int(n_frames or len(videos[0]))
    cols = min(columns, len(videos))
    rows = -(-len(videos) // cols)
    cell_h = caption_px + tile
    out = np.zeros((T, rows * cell_h, cols * tile), np.uint8)
    try:
        font = ImageFont.load_default(size=max(10, caption_px // 2 - 4))
    except TypeError:  # Pillow < 10.1 has no sized default font
        font = ImageFont.load_default()
    for i, (v, cap) in enumerate(zip(videos, captions)):
        r, c = divmod(i, cols)
        y, x = r * cell_h, c * tile
        frames = to_uint8(resize_frames(np.asarray(v), (tile, tile)))
        out[:, y + caption_px:y + cell_h, x:x + tile] = frames[np.arange(T) % len(frames)]
        band = Image.new("L", (tile, caption_px), 30)
        ImageDraw.Draw(band).multiline_text((4, 2), str(cap), fill=255, font=font, spacing=1)
        out[:, y:y + caption_px, x:x + tile] = np.asarray(band)[None]
    return out


def video_thumbnails(dataset, names: Sequence[str], *, size: int = 64, frame: str = "middle") -> dict[str, str]:
    """name -> data-URI thumbnail (the middle frame, or the first) of each listed video.

    When the FileList gives the video's frame count T, only frames 0 and T // 2 are
    decoded (``frame_step``: an intra-only codec such as EchoNet's MJPEG skips the rest),
    which is what keeps a page of 25 thumbnails quick; else every frame is decoded."""
    out = {}
    counts = dataset.table.set_index("FileName")["NumberOfFrames"] if "NumberOfFrames" in dataset.table else None
    for n in names:
        total = int(counts.get(n, -1)) if counts is not None else -1
        if frame != "middle":
            frames = dataset.load(n, num_frames=1).frames
            out[n] = thumbnail_data_uri(frames[0], size)
            continue
        if total >= 4:
            frames = dataset.load(n, frame_step=total // 2).frames
            if len(frames) >= 2:
                out[n] = thumbnail_data_uri(frames[1], size)
                continue
        frames = dataset.load(n).frames
        out[n] = thumbnail_data_uri(frames[len(frames) // 2], size)
    return out
