"""The benchmark harness: structure, errors and the timing protocol. Never the speed itself
(speed lives in `dtf benchmark` and benchmarks/, not in assertions)."""

from __future__ import annotations

import json

import pytest
import torch
from _cli import dtf

from dtfcli.engine import benchmark as bench


@pytest.fixture(scope="module")
def quick_report():
    """One real `dtf benchmark --quick --json` run, shared by the structure tests."""
    proc = dtf("benchmark", "--quick", "--json", "--suite", "flops,inference,train", "--device", "cpu", "--iters", "2")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_quick_run_reports_machine_and_options(quick_report):
    machine, options = quick_report["machine"], quick_report["options"]
    for key in ("date", "cpu", "cpu_cores", "torch", "commit", "load_average_1min"):
        assert key in machine
    assert options["device"] == "cpu" and options["quick"] is True and options["iters"] == 2


def test_every_speed_row_has_both_throughputs_and_a_ratio(quick_report):
    rows = [r for r in quick_report["rows"] if r["suite"] in ("inference", "train")]
    assert {r["suite"] for r in rows} == {"inference", "train"}
    for r in rows:
        assert r["candidate_clips_per_s"] > 0 and r["baseline_clips_per_s"] > 0
        assert r["throughput_ratio"] > 0
        low, high = r["throughput_ratio_range"]
        assert low <= r["throughput_ratio"] <= high
        assert r["device"] == "cpu" and r["batch"] == 1


def test_training_rows_report_peak_memory_in_mib(quick_report):
    rows = [r for r in quick_report["rows"] if r["suite"] == "train"]
    assert rows
    for r in rows:
        assert r["candidate_peak_mib"] > 0 and r["baseline_peak_mib"] > 0
        assert r["memory_ratio"] == pytest.approx(r["candidate_peak_mib"] / r["baseline_peak_mib"], rel=1e-2)


def test_targets_are_checked_and_marked_as_proxies_on_tiny_models(quick_report):
    dtf_vs_c2d = [
        r for r in quick_report["rows"] if r.get("candidate") == "dtfnet_tiny" and r.get("baseline") == "c2d_tiny"
    ]
    metrics = {(r["suite"], t["metric"]): t for r in dtf_vs_c2d for t in r["targets"]}
    assert set(metrics) == {("inference", "throughput"), ("train", "throughput"), ("train", "memory")}
    for target in metrics.values():
        assert target["proxy"] is True and isinstance(target["passed"], bool)


def test_flops_suite_lists_the_papers_rows(quick_report):
    flops = {r["name"]: r for r in quick_report["rows"] if r["suite"] == "flops"}
    assert {"dtfnet_r50": 25, "c2d_r50": 23, "dtf_swin_b": 266}.items() <= {
        n: r["paper_gflops"] for n, r in flops.items()
    }.items()
    for r in flops.values():
        assert r["params_m"] > 0 and r["gflops"] > 0


def test_unknown_suite_is_a_one_line_error(run_cli):
    proc = run_cli("benchmark", "--suite", "inference,warp")
    assert proc.returncode != 0
    assert "unknown suite 'warp'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error(run_cli):
    proc = run_cli("benchmark", "--suite", "inference", "--device", "cuda")
    assert proc.returncode != 0
    assert "no CUDA GPU" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_batch_is_a_clear_error(run_cli):
    proc = run_cli("benchmark", "--suite", "inference", "--batch", "1,x")
    assert proc.returncode != 0 and "--batch" in proc.stderr


def test_block_suite_compares_dtf_with_a_temporal_conv_and_tsm():
    opts = bench.RunOptions(torch.device("cpu"), batch=1, iters=1, warmup=0)
    comparisons = bench.block_comparisons(quick=True)[:2]
    rows = bench.run_comparisons(comparisons, "train", opts, measure_memory=False)
    assert [(r["candidate"], r["baseline"]) for r in rows] == [
        ("block:dtf", "block:conv1d"),
        ("block:dtf", "block:tsm"),
    ]
    assert all(r["throughput_ratio"] > 0 and r["candidate_input"] == r["baseline_input"] for r in rows)


def test_under_autocast_the_block_suite_also_compares_the_float32_spectrum():
    """bfloat16 autocast: the block against itself with the released code's float32 path,
    built as such (the candidate's matmuls run in bfloat16, the baseline's in float32)."""
    comparisons = bench.block_comparisons(quick=True, amp=True)
    pairs = [(c.candidate.name, c.baseline.name) for c in comparisons[:3]]
    assert pairs == [
        ("block:dtf", "block:conv1d"),
        ("block:dtf", "block:tsm"),
        ("block:dtf", "block:dtf-float32-spectrum"),
    ]
    assert "dtf-float32-spectrum" not in str(bench.block_comparisons(quick=True))
    candidate, baseline = (bench.build_module(c) for c in (comparisons[2].candidate, comparisons[2].baseline))
    assert not candidate.float32_spectrum and baseline.float32_spectrum
    opts = bench.RunOptions(torch.device("cpu"), batch=1, iters=1, warmup=0, amp_dtype=torch.bfloat16)
    (row,) = bench.run_comparisons([comparisons[2]], "inference", opts)
    assert row["amp"] == "bfloat16" and row["throughput_ratio"] > 0


def test_video_swin_is_compared_at_the_same_frames_inside_the_network():
    """swin3d_b's patch is 2 frames deep, DTF-Transformer's 4: 32 and 64 input frames are both 16 inside."""
    (comp,) = [c for c in bench.model_comparisons() if c.baseline.name == "torchvision:swin3d_b"]
    assert comp.candidate.shape[1] // 4 == comp.baseline.shape[1] // 2 == 16


def test_alternating_rounds_flip_the_order():
    calls = []
    steps = [lambda: calls.append("A"), lambda: calls.append("B")]
    times = bench.time_alternating(steps, torch.device("cpu"), iters=4, warmup=1)
    assert "".join(calls) == "AB" + "AB" + "BA" + "AB" + "BA"
    assert [len(t) for t in times] == [4, 4]


def test_paired_ratio_is_the_median_of_per_round_ratios():
    out = bench._paired_ratio([2.0, 1.0, 4.0], [1.0, 1.0, 1.0])  # candidate twice as slow, most rounds
    assert out == {"throughput_ratio": 0.5, "throughput_ratio_range": [0.25, 1.0]}


def test_targets_check_both_directions():
    assert bench.Target("throughput", ">=", 0.92).check(0.93) is True
    assert bench.Target("memory", "<=", 1.25).check(1.3) is False
    assert bench.Target("memory", "<=", 1.25).check(None) is None


def test_parse_suites():
    assert bench.parse_suites("all") == list(bench.SUITES)
    assert bench.parse_suites("flops, block") == ["flops", "block"]
    with pytest.raises(ValueError, match="unknown suite"):
        bench.parse_suites("")


def test_decode_suite_measures_both_backends_on_a_real_video(tmp_path):
    from dtfcli.engine.decode_benchmark import make_video

    video = tmp_path / "short_340p_h264.mp4"  # 2 s: the suite's own file is 10 s
    make_video(video, codec="libx264", size=(340, 604), fps=30, seconds=2, gop=60)
    rows = bench.decode_suite(str(video))
    measured = [r for r in rows if "ratio" in r]
    assert {r["backend"] for r in measured} >= {"pyav"}
    for r in measured:
        # 10 clips x 16 frames, every one equal to a plain sequential decode
        assert r["frames"] == 160 and r["ours_correct"] == 1.0 and r["ratio"] > 0


def test_cpu_memory_probe_runs_in_a_fresh_process():
    (peak,) = bench.cpu_training_peak_mib([bench.Contender("c2d_tiny", (3, 8, 64, 64))], batch=1)
    assert peak > 0


def test_the_table_output_shows_ratios_and_targets(run_cli):
    proc = run_cli("benchmark", "--quick", "--suite", "inference", "--device", "cpu", "--iters", "1")
    assert proc.returncode == 0, proc.stderr
    assert "inference (cpu, float32)" in proc.stdout and "dtfnet_tiny" in proc.stdout
    assert "speed >=0.92" in proc.stdout and "targets met:" in proc.stdout


def test_bfloat16_and_channels_last_setups_run():
    opts = bench.RunOptions(
        torch.device("cpu"), batch=1, iters=1, warmup=0, amp_dtype=torch.bfloat16, channels_last=True
    )
    comparison = bench.model_comparisons(quick=True)[0]
    (row,) = bench.run_comparisons([comparison], "train", opts, measure_memory=False)
    assert row["amp"] == "bfloat16" and row["channels_last"] is True and row["throughput_ratio"] > 0
