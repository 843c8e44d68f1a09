"""The real `dtf` command for the tests: in this interpreter (the default) or as a process."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import traceback
import warnings

import torch

TORCH_DEFAULT_SEED = 67280421310721  # what a fresh interpreter's torch starts from


def run_subprocess(args: tuple[str, ...], env: dict | None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dtfcli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def _fresh_warning_filters() -> None:
    """The filters a fresh interpreter starts with (pytest shows deprecations; `dtf` does not)."""
    warnings.resetwarnings()
    for category in (ResourceWarning, ImportWarning, PendingDeprecationWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)  # each goes first: the reverse order
    warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")


def _print_warning(message, category, filename, lineno, file=None, line=None):
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@contextlib.contextmanager
def _process_state_restored():
    """What a `dtf` run may change in this interpreter, put back afterwards: the environment,
    argv, cwd, torch's threads / denormal flushing / determinism / RNG, logger levels, signal
    handlers. A real process starts clean every time; in-process calls must not leak."""
    from dtfcli.engine import runtime

    environ, argv, cwd = dict(os.environ), list(sys.argv), os.getcwd()
    threads, flushed = torch.get_num_threads(), runtime._flushed
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    levels = {name: lg.level for name, lg in logging.root.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            torch.manual_seed(TORCH_DEFAULT_SEED)
            _fresh_warning_filters()
            warnings.showwarning = _print_warning  # to stderr, as a process does, not to pytest's record
            yield
    finally:
        os.environ.clear()
        os.environ.update(environ)
        sys.argv[:] = argv
        os.chdir(cwd)
        torch.set_num_threads(threads)
        torch.set_flush_denormal(flushed)
        runtime._flushed = flushed
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        for sig, handler in handlers.items():
            if handler is not None:
                signal.signal(sig, handler)


def run_in_process(args: tuple[str, ...], env: dict | None) -> subprocess.CompletedProcess:
    """`dtf ARGS` through the entry point the `dtf` script runs (`dtfcli.cli.main`: the CPU
    settings, the one-line errors, the exit codes), in this interpreter: no torch import per
    call. Output is captured with Click's test runner, stdout and stderr apart."""
    from click.testing import CliRunner

    from dtfcli.cli import _common, main

    consoles = (_common.console, _common.err_console)
    saved = [(c._width, c._color_system) for c in consoles]
    root_handlers = list(logging.root.handlers)
    with _process_state_restored(), CliRunner().isolation(env={"COLUMNS": "200", **(env or {})}) as (out, err, _):
        sys.argv[:] = ["dtf", *args]
        threads = os.environ.get("OMP_NUM_THREADS", "")
        if threads.isdigit() and int(threads) > 0:  # what torch in a fresh process would take
            torch.set_num_threads(int(threads))
        for c in consoles:  # made at import, from COLUMNS and the terminal then; a process makes them anew
            c.width = int(os.environ["COLUMNS"])
            c._color_system = None  # its output is a pipe: no colour codes
        # A process has no logging handlers: a warning goes to stderr through logging's last
        # resort, not to pytest's capture.
        logging.root.handlers = []
        try:
            main()
            code = 0
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:  # sys.exit("message"): the interpreter prints it and exits with 1
                print(exc.code, file=sys.stderr)
                code = 1
        except KeyboardInterrupt:  # the interpreter ends itself with SIGINT
            traceback.print_exc()
            code = -signal.SIGINT
        except Exception:  # what the interpreter does with an uncaught error (--debug lets it through)
            traceback.print_exc()
            code = 1
        finally:
            logging.root.handlers = root_handlers
            for c, (width, colors) in zip(consoles, saved, strict=True):
                c._width, c._color_system = width, colors
        sys.stdout.flush()
        sys.stderr.flush()
        stdout = out.getvalue().decode("utf-8", "replace")
        stderr = err.getvalue().decode("utf-8", "replace")
    return subprocess.CompletedProcess([sys.executable, "-m", "dtfcli", *args], code, stdout, stderr)


def dtf(*args: str, check: bool = False, env: dict | None = None, process: bool = False) -> subprocess.CompletedProcess:
    """Run `dtf ARGS`; returns a CompletedProcess (returncode, stdout, stderr).

    In this interpreter by default (a torch import per call is seconds). ``process=True`` runs
    `python -m dtfcli` as a real process: for what only a process shows (signals, torchrun,
    what is imported, environment variables read at import time). ``env`` sets environment
    variables for the call; anything but COLUMNS (which the in-process run applies to the
    consoles) makes it a real process, since a module may have read it at import."""
    if process or set(env or {}) - {"COLUMNS"}:
        proc = run_subprocess(args, env)
    else:
        proc = run_in_process(args, env)
    if check and proc.returncode != 0:
        raise AssertionError(f"dtf {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc
