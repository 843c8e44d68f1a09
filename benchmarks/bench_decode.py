"""Decoding throughput of the 10x3 test views, against each decoder reading the same frames raw.

Usage (from the repository root):
    python benchmarks/bench_decode.py                # makes its own 10 s test files
    python benchmarks/bench_decode.py --video my.mp4  # or measure a file of yours
    python benchmarks/bench_decode.py --repeat 5 --clip-len 16 --interval 4

For each file it prints, per method: best wall and CPU seconds (round-robin repeats) for
the frames of the 10x3 test views (10
clips x 16 frames; the 3 crops share their frames), frames decoded where known, and
correctness: the share of returned frames equal (mean abs difference < 3 levels) to the
reference, a plain sequential PyAV decode of the whole file.

Methods:
  dtf B read_clips        open_video(path, B).read_clips(all 10 clips): one pass over the file
  dtf B per clip          open_video(path, B).get_frames(clip) once per clip
  raw decord get_batch    decord.VideoReader(path).get_batch(indices) for the same frame numbers
  raw pyav sequential     decode the whole file with PyAV, keep the wanted frames
No assertions: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dtfcli.data.sampling import sample_test_views  # noqa: E402
from dtfcli.data.video import open_video  # noqa: E402


def make_video(path: Path, *, codec: str, size: tuple[int, int], fps: int, seconds: float, gop: int,
               bframes: int = 2) -> None:
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
            frame = np.ascontiguousarray(texture[shift:shift + h, shift:shift + w])
            frame[:, (i * 4) % w: (i * 4) % w + 16] = 255  # a bright bar sweeping across
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def reference_frames(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def correct_share(frames, indices, reference) -> float:
    ok = [np.abs(np.asarray(f, np.float32) - reference[i].astype(np.float32)).mean() < 3
          for f, i in zip(frames, indices, strict=True)]
    return float(np.mean(ok))


def bench_file(path: Path, args) -> list[tuple]:
    reference = reference_frames(path)
    n = len(reference)
    views = sample_test_views(n, clip_len=args.clip_len, frame_interval=args.interval, num_clips=10, num_crops=3)
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
            vr = decord.VideoReader(str(path), num_threads=1)
            return list(vr.get_batch(flat).asnumpy()), None

        methods["raw decord get_batch"] = raw_decord
    except ImportError:
        pass

    import av

    def raw_pyav():
        wanted, frames_by_index, decoded = set(flat), {}, 0
        with av.open(str(path)) as container:
            container.streams.video[0].thread_type = "AUTO"
            for i, frame in enumerate(container.decode(video=0)):
                decoded += 1
                if i in wanted:
                    frames_by_index[i] = frame.to_ndarray(format="rgb24")
        return [frames_by_index[i] for i in flat], decoded

    methods["raw pyav sequential"] = raw_pyav

    # Round-robin repeats (best of N per method) so a busy machine slows all methods alike.
    # CPU time (all threads of this process) is reported too: on a shared machine wall time
    # also measures the neighbours.
    best = {name: float("inf") for name in methods}
    best_cpu = dict(best)
    results: dict = {}
    for _ in range(args.repeat):
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
            rows.append((name, best[name], best_cpu[name], decoded, len(frames),
                         correct_share(frames, flat, reference)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, action="append", help="measure this file (repeatable)")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--clip-len", type=int, default=16)
    parser.add_argument("--interval", type=int, default=4)
    args = parser.parse_args()

    import av

    print(f"# {time.strftime('%Y-%m-%d')}, {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"python {platform.python_version()}, "
          f"PyAV {av.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        files = args.video
        if not files:
            tmp = Path(tmp)
            files = [tmp / "k400_like_340p_h264.mp4", tmp / "ucf_like_240p_mpeg4.avi"]
            make_video(files[0], codec="libx264", size=(340, 604), fps=30, seconds=10, gop=60)
            make_video(files[1], codec="mpeg4", size=(240, 320), fps=25, seconds=10, gop=12)
        for path in files:
            print(f"\n## {path.name}: 10x3 test views, {args.clip_len} frames x interval {args.interval}")
            print(f"{'method':<26}{'wall s':>8}{'cpu s':>8}{'frames/s':>10}{'decoded':>9}{'returned':>9}{'correct':>9}")
            for name, seconds, cpu, decoded, returned, correct in bench_file(path, args):
                rate = returned / seconds if seconds == seconds and seconds > 0 else float("nan")
                corr = f"{correct:.0%}" if isinstance(correct, float) else correct
                print(f"{name:<26}{seconds:>8.3f}{cpu:>8.3f}{rate:>10.0f}{decoded if decoded is not None else '-':>9}"
                      f"{returned:>9}{corr:>9}")


if __name__ == "__main__":
    main()
