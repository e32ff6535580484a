"""What the root entry points share: config errors as one line, and SIGTERM as a clean stop.

A bad override or an unknown config name is a user error like any other, so it gets one
line on stderr and exit code 2 instead of Hydra's multi-line report (``HYDRA_FULL_ERROR=1``
brings Hydra's own report back). SIGTERM (a SLURM preemption, ``kill``) unwinds the run so
temporary member folders are removed and locks released; every completed member and every
completed pruning round is already on disk, so relaunching the same command continues.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator

from .errors import UserError

EXIT_USER_ERROR = 2
EXIT_STOPPED = 128 + signal.SIGTERM  # what a shell reports for a process ended by SIGTERM
_NOISE = ("full_key:", "reference_type=", "object_type=", "provider=", "Config search path",
          "Set the environment variable HYDRA_FULL_ERROR", "See https://")

# conf/hydra/launcher/*.yaml extend the launcher plugins' schemas of the same name on purpose
# (Hydra 1.3 merges a file onto a ConfigStore schema with its name); the notice is not news.
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/\w+' is validated against ConfigStore schema")


class Stopped(BaseException):
    """SIGTERM arrived. A BaseException, so no ``except Exception`` on the way can swallow it."""


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM raises Stopped (in the main thread, outside submitit jobs).

    submitit installs its own handlers (USR2: checkpoint and requeue; SIGTERM: ignored until
    SLURM's grace time ends), so inside a submitit job this does nothing.
    """
    if threading.current_thread() is not threading.main_thread() or os.environ.get("SUBMITIT_EXECUTOR"):
        yield
        return

    def stop(signum, _frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the cleanup
        raise Stopped(f"stopped by {signal.Signals(signum).name}: complete members and finished pruning "
                      "rounds are saved; run the same command again to continue")

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def user_errors_exit() -> Iterator[None]:
    """Within the block, a UserError becomes one ``error: ...`` line on stderr and exit code 2."""
    try:
        yield
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def config_error_types() -> tuple[type[BaseException], ...]:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    return HydraException, OmegaConfBaseException


def one_line(error: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line messages folded into one line, minus the boilerplate."""
    text = str(error)
    cause = error.__cause__
    if cause is not None and str(cause) not in text:
        text += "\n" + str(cause)
    parts, options = [], []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(_NOISE):
            continue
        if raw.startswith("\t"):  # Hydra lists a group's available options one per tab-indented line
            options.append(line)
            continue
        parts.append(line.rstrip(".:") if not options else line)
    if options:
        parts.append(", ".join(o for o in options if not o.endswith("_schema")))
    override = getattr(error, "override", None)  # an override Hydra could not parse
    if override and not any(override in part for part in parts):
        parts.insert(0, f"cannot parse override {override!r}")
    return ": ".join(parts) or type(error).__name__


def run_cli(main: Callable[[], None]) -> None:
    """Call a ``@hydra.main`` function; a config error becomes ``error: ...`` and exit code 2."""
    if os.environ.get("HYDRA_FULL_ERROR"):
        main()  # the user asked for Hydra's full reports
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let config errors reach us instead of Hydra's printer
    try:
        main()
    except config_error_types() as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except Exception as e:
        if type(e).__name__ == "UncompletedJobError":  # submitit: a job of the sweep failed
            print(f"error: {failed_job(str(e))}", file=sys.stderr)
            sys.exit(1)
        if 'Could not detect "srun"' in str(e):  # submitit_slurm off a cluster
            print("error: hydra/launcher=submitit_slurm needs a SLURM cluster (no srun here): use "
                  "hydra/launcher=submitit_local or joblib on this machine", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        raise


def failed_job(message: str) -> str:
    """submitit's report of a failed job -> its last error line and where its logs are."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    last = lines[-1] if lines else "no output"
    last = last[len("error: "):] if last.startswith("error: ") else last
    folder = next((os.path.dirname(w) for line in lines for w in line.split() if w.endswith("_result.pkl")), "")
    return f"a job of the sweep failed: {last} (its logs: {folder or 'the sweep folder'}/)"
