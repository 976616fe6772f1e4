"""`accelerate launch`, with the trainer's config checked before any process starts.

    python -m betavae_dist.launch [accelerate launch options] -m betavae_dist.train --config FILE [key=value ...]

Under plain `accelerate launch`, a bad config makes every rank print the same line and exit 2,
and the launcher then exits 1 with torch elastic's ChildFailedError report. Here the launch
options' `--config_file` (it must exist and be a YAML mapping), the config and every check that
needs no process group (`preflight.py`, with the world size the launch options ask for) run
first: a problem is one line and exit 2, and nothing is started. Otherwise this process runs
`accelerate launch` with the same arguments, in a thread of its own.

Signals are this process's, whichever accelerate is installed: its launchers install their own
handlers only in the main thread (since 1.16 the one-process launcher turns a SIGTERM into exit 143
and kills the worker 5 s later; torch elastic's raises SignalException). Here the main thread
passes SIGTERM, SIGINT, SIGHUP and SIGUSR1 on to the workers (not one this process was started
ignoring: the SLURM scripts ignore USR1 here) and waits for them, however long their stop
checkpoint takes; the exit status is then the one the workers meant.

When a worker fails, accelerate's launcher reports it with a traceback of its own
(`CalledProcessError`, or torch elastic's `ChildFailedError` box, after elastic's log lines of the
exit and of the SIGTERM to the others) and exits 1, whatever the worker said. Here that report and
those log lines are left out, as the workers tell the cause in a line of theirs; the exit status is
the one the first failing worker meant (README: config 2, run-time 1, preempted 3). Where every
rank was ended by a signal, none could say a word (the OOM killer's SIGKILL, say): one line here.
Any other module or script is launched unchecked. slurm/ uses it.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
from pathlib import Path

import yaml

from .config import ConfigError
from .experiment import load_or_exit

CHECKED = "betavae_dist.train"
QUIET = "torch.distributed.elastic"  # logs a failed worker's exit, a stop signal, and the SIGTERM to the rest
PASSED_ON = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)


def option(launch_args: list[str], name: str) -> str | None:
    """The value of a launch option (`--name VALUE` or `--name=VALUE`), or None."""
    for i, arg in enumerate(launch_args):
        if arg == name and i + 1 < len(launch_args):
            return launch_args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def launch_config(launch_args: list[str]) -> dict:
    """The --config_file's settings ({} without one); a missing or bad file is a ConfigError."""
    path = option(launch_args, "--config_file")
    if path is None:
        return {}
    try:
        settings = yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"--config_file {path}: {getattr(e, 'strerror', None) or e}".replace("\n", " ")) from None
    if not isinstance(settings, dict):
        raise ConfigError(f"--config_file {path}: not a YAML mapping of accelerate's launch settings")
    return settings


def world_size(launch_args: list[str]) -> int | None:
    """The number of processes the launch options ask for (--num_processes, else the
    --config_file's num_processes), or None when they do not say."""
    settings = launch_config(launch_args)  # read even where --num_processes is given: a bad file is refused
    count = option(launch_args, "--num_processes") or settings.get("num_processes")
    return int(count) if count is not None else None


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):  # what this adds, then accelerate launch's own usage
        print(__doc__.strip() + "\n\naccelerate launch's options follow.\n", flush=True)
        argv = ["--help"]
    checked = "-m" in argv and argv.index("-m") + 1 < len(argv) and argv[argv.index("-m") + 1] == CHECKED
    launch_args = argv[:argv.index("-m")] if "-m" in argv else argv
    try:
        ranks = world_size(launch_args)
    except ConfigError as e:
        print(f"betavae_dist.launch: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    if checked:
        cfg = load_or_exit(argv[len(launch_args) + 2:], CHECKED)  # one line and exit 2 on a bad config
        from .preflight import preflight  # torch and accelerate only when the trainer is the one launched

        try:
            preflight(cfg, ranks or 1)
        except ConfigError as e:
            print(f"{CHECKED}: config error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
    raise SystemExit(launch(argv))


def launch(argv: list[str]) -> int:
    """`accelerate launch argv` in this process; its exit status, as the module docstring says."""
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    args = launch_command_parser().parse_args(argv)
    name = QUIET  # the handlers its records reach: torch sets them on "torch" and "torch.distributed"
    while name:
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(lambda record: not record.name.startswith(QUIET))
        name = name.rpartition(".")[0]
    try:
        in_a_thread(launch_command, args)
        return 0
    except subprocess.CalledProcessError as e:  # one process (accelerate's simple launcher)
        failures = [(0, e.returncode, None)]
    except ChildFailedError as e:  # torch elastic: rank -> its failure, the first to fail first
        first, _ = e.get_first_failure()
        failures = [(rank, f.exitcode, f.pid) for rank, f in sorted(e.failures.items(), key=lambda kv: kv[0] != first)]
    status, line = exit_status(failures)
    if line:
        print(f"betavae_dist.launch: {line}", file=sys.stderr, flush=True)
    return status


def in_a_thread(function, *args) -> None:
    """`function(*args)` in a thread while this (main) thread passes stop signals on to this
    process's children, the workers (module docstring); raises what `function` raised."""
    import psutil  # accelerate's dependency

    def pass_on(signum, frame):
        for child in psutil.Process().children():
            try:
                child.send_signal(signum)
            except psutil.NoSuchProcess:
                pass

    raised: list[BaseException] = []

    def run() -> None:
        try:
            function(*args)
        except BaseException as e:  # handed to the main thread as it is
            raised.append(e)

    before = {sig: signal.getsignal(sig) for sig in PASSED_ON}
    for sig, handler in before.items():
        if handler != signal.SIG_IGN:
            signal.signal(sig, pass_on)
    thread = threading.Thread(target=run, name="accelerate-launch")
    try:
        thread.start()
        while thread.is_alive():
            thread.join(0.2)  # a short wait, so that the signal handlers run
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
    if raised:
        raise raised[0]


def exit_status(failures: list[tuple[int, int, int | None]]) -> tuple[int, str | None]:
    """From the failed workers (rank, exit code, pid; the first to fail first): the launch's exit
    status, and a line to print where no rank can have told why: every one was ended by a signal,
    none by the SIGTERM the launcher sends the rest (a rank alive then has named the rank it lost)."""
    from .stopping import PREEMPTED_EXIT_CODE

    rank, code, pid = failures[0]
    if code == -signal.SIGINT:  # Ctrl-C, passed on to the workers
        return 128 + signal.SIGINT, None
    if all(c < 0 and c != -signal.SIGTERM for _, c, _ in failures):
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        where = f"rank {rank}" + (f" (pid {pid})" if pid else "")
        return 1, f"{where} was ended by {name} without a word (out of memory? killed?); the launch stopped"
    meant = [c for _, c, _ in failures if c >= 0]  # the rest were ended by signals (the launcher's SIGTERM)
    return (meant[0] if meant and meant[0] in (1, 2, PREEMPTED_EXIT_CODE) else 1), None


if __name__ == "__main__":
    main()
