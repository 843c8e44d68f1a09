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
  raw decord get_batch    decord.VideoReader(path).get_batch(the same frame numbers, distinct and
                          in file order), handed out in the clips' order
  raw pyav sequential     decode the whole file with PyAV, convert the wanted frames to RGB
                          with one reused converter (as dtf does): the baseline of the ratio
  raw pyav to_ndarray     the same with the plain frame.to_ndarray(format="rgb24"), which sets
                          up a new converter per frame (for reference)
The sequential PyAV baseline suits 10 s files, where the clips leave gaps of a few frames;
for a long --video a seeking decode would beat it. No assertions: a measurement, not a test.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dtfcli.engine.decode_benchmark import bench_file, make_video  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, action="append", help="measure this file (repeatable)")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    parser.add_argument("--clip-len", type=int, default=16)
    parser.add_argument("--interval", type=int, default=4)
    args = parser.parse_args()

    import av

    print(
        f"# {time.strftime('%Y-%m-%d')}, {platform.platform()}, {platform.processor() or platform.machine()}, "
        f"python {platform.python_version()}, "
        f"PyAV {av.__version__}"
    )
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
            rows = bench_file(path, args.clip_len, args.interval, args.repeat)
            for name, seconds, cpu, decoded, returned, correct in rows:
                rate = returned / seconds if seconds == seconds and seconds > 0 else float("nan")
                corr = f"{correct:.0%}" if isinstance(correct, float) else correct
                print(
                    f"{name:<26}{seconds:>8.3f}{cpu:>8.3f}{rate:>10.0f}{decoded if decoded is not None else '-':>9}"
                    f"{returned:>9}{corr:>9}"
                )


if __name__ == "__main__":
    main()
