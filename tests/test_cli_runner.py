"""The tests' `run_cli` runs `dtf` in the test's interpreter: it must give what a real `dtf`
process gives, byte for byte, on both streams and in the exit code."""

from __future__ import annotations


def test_in_process_run_gives_what_the_process_gives(run_cli, tmp_path):
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video\n", encoding="utf-8")
    # a line on stdout; on stderr a warning (random weights), a skipped input, a summary; exit code 1
    args = ("predict", str(notes), "-m", "c2d_tiny", "--fast", "-j", "0")
    inside, process = run_cli(*args), run_cli(*args, process=True)
    assert process.returncode == 1 and process.stdout and "warning:" in process.stderr, process
    assert (inside.returncode, inside.stdout, inside.stderr) == (process.returncode, process.stdout, process.stderr)
