"""Decoding benchmark: the 10x3 test views of a video through `dtfcli.data` against each
decoder reading the same frames raw. Used by `dtf benchmark --suite decode` and
`benchmarks/bench_decode.py`. No assertions: a measurement, not a test."""

from __future__ import annotations

import time
from collections.abc import Collection
from fractions import Fraction
from pathlib import Path

import numpy as np

from dtfcli.data.sampling import sample_test_views
from dtfcli.data.video import open_video


def make_video(
    path: Path, *, codec: str, size: tuple[int, int], fps: int, seconds: float, gop: int, bframes: int = 2
) -> None:
    """Moving textured content (so the codec has real work), written with PyAV."""
    import av

    h, w = size
    rng = np.random.default_rng(0)
    texture = (rng.uniform(0, 255, (h // 8 + 2, w // 8 + 2, 3))).astype(np.uint8)
    texture = np.kron(texture, np.ones((8, 8, 1), np.uint8))
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.height, stream.width, stream.pix_fmt = h, w, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.options = {"preset": "veryfast"} if codec == "libx264" else {"bf": str(bframes)}
        for i in range(int(seconds * fps)):
            shift = (2 * i) % 8
            frame = np.ascontiguousarray(texture[shift : shift + h, shift : shift + w])
            frame[:, (i * 4) % w : (i * 4) % w + 16] = 255  # a bright bar sweeping across
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def reference_frames(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def correct_share(frames, indices, reference) -> float:
    ok = [
        np.abs(np.asarray(f, np.float32) - reference[i].astype(np.float32)).mean() < 3
        for f, i in zip(frames, indices, strict=True)
    ]
    return float(np.mean(ok))


def bench_file(
    path: Path,
    clip_len: int = 16,
    interval: int = 4,
    repeat: int = 3,
    only: Collection[str] | None = None,
    warmup: int = 0,
) -> list[tuple]:
    """Per method: (name, best wall s, best CPU s, frames decoded or None, frames returned,
    share of returned frames equal to the reference). ``only``: the methods to run (all by
    default); ``warmup``: untimed rounds first."""
    reference = reference_frames(path)
    n = len(reference)
    views = sample_test_views(n, clip_len=clip_len, frame_interval=interval, num_clips=10, num_crops=3)
    clips = [list(v.positions) for v in views if v.crop == 0]
    flat = [i for clip in clips for i in clip]
    methods = {}  # name -> callable returning (frames, frames decoded or None)

    def ours_one_pass(backend):
        reader = open_video(path, backend)
        return [f for clip in reader.read_clips(clips) for f in clip.numpy()], reader.stats.frames_decoded

    def ours_per_clip(backend):
        reader = open_video(path, backend)
        frames = [f for clip in clips for f in reader.get_frames(clip).numpy()]
        return frames, reader.stats.frames_decoded

    for backend in ("pyav", "decord"):
        methods[f"dtf {backend} read_clips"] = lambda b=backend: ours_one_pass(b)
        methods[f"dtf {backend} per clip"] = lambda b=backend: ours_per_clip(b)
    try:
        import decord

        def raw_decord():
            # The distinct frames in file order, then handed out in the order asked for.
            # (get_batch on the clip-major list would seek back at every clip start:
            # about 2x slower, a baseline no one would write.)
            vr = decord.VideoReader(str(path), num_threads=1)
            distinct = sorted(set(flat))
            batch = vr.get_batch(distinct).asnumpy()
            row = {i: r for r, i in enumerate(distinct)}
            return [batch[row[i]] for i in flat], None

        methods["raw decord get_batch"] = raw_decord
    except ImportError:
        pass

    import av
    from av.video.reformatter import VideoReformatter

    def raw_pyav(one_converter: bool):
        """Decode the whole file in order, converting each wanted frame to RGB once.  The test
        clips run from the first frame to the last and, in a 10 s file, leave gaps of a few
        frames at most, so no decoder can skip much; in a long file a seeking decoder would
        beat this baseline.  ``one_converter``: reuse one converter, as our reader does (the
        same arrays, bit for bit); else the plain ``frame.to_ndarray(format="rgb24")``, which
        sets up a converter for every frame."""
        wanted, frames_by_index, decoded = set(flat), {}, 0
        converter = VideoReformatter()
        with av.open(str(path)) as container:
            container.streams.video[0].thread_type = "AUTO"
            for i, frame in enumerate(container.decode(video=0)):
                decoded += 1
                if i in wanted:
                    if one_converter:
                        frames_by_index[i] = converter.reformat(frame, format="rgb24", threads=1).to_ndarray()
                    else:
                        frames_by_index[i] = frame.to_ndarray(format="rgb24")
        return [frames_by_index[i] for i in flat], decoded

    # The baseline for the ratio: the decoder's own speed, with the conversion done as
    # cheaply as we do it.  The plain-to_ndarray row shows what the usual idiom costs.
    methods["raw pyav sequential"] = lambda: raw_pyav(True)
    methods["raw pyav to_ndarray"] = lambda: raw_pyav(False)

    if only is not None:
        methods = {name: fn for name, fn in methods.items() if name in only}
    # Round-robin repeats (best of N per method) so a busy machine slows all methods alike.
    # CPU time (all threads of this process) is reported too: on a shared machine wall time
    # also measures the neighbours.
    best = {name: float("inf") for name in methods}
    best_cpu = dict(best)
    results: dict = {}
    for _ in range(warmup):
        for fn in methods.values():
            try:
                fn()
            except Exception:  # noqa: BLE001 - the timed rounds report it
                pass
    for _ in range(repeat):
        for name, fn in methods.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            try:
                results[name] = fn()
            except Exception as exc:  # noqa: BLE001 - report and go on
                results[name] = exc
                continue
            best[name] = min(best[name], time.perf_counter() - start)
            best_cpu[name] = min(best_cpu[name], time.process_time() - start_cpu)
    rows = []
    for name in methods:
        out = results[name]
        if isinstance(out, Exception):
            rows.append((name, float("nan"), float("nan"), None, 0, f"error: {out}"))
        else:
            frames, decoded = out
            rows.append(
                (name, best[name], best_cpu[name], decoded, len(frames), correct_share(frames, flat, reference))
            )
    return rows
