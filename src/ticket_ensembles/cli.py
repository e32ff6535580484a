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
import subprocess
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Iterator

from .errors import UserError
from .hydra_callbacks import close_progress_bars
from .jobs import JobFailed, in_submitit_job, job_report

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
    """Within the block, a UserError becomes one ``error: ...`` line on stderr and exit code 2.

    Inside a submitit job any failure is raised again as JobFailed instead (see jobs.py): an
    exit would leave no result file, and the launching command could not say why the job failed.
    """
    try:
        yield
    except UserError as e:
        close_progress_bars()  # a job of a basic-launcher sweep: the sweep's bar would share the error's line
        print(f"error: {e}", file=sys.stderr)
        if in_submitit_job():
            raise JobFailed(job_report(str(e))) from None
        sys.exit(EXIT_USER_ERROR)
    except Exception as e:
        if not in_submitit_job():
            raise
        traceback.print_exc()  # the whole story stays in the job's log
        lines = str(e).strip().splitlines()
        raise JobFailed(job_report(f"{type(e).__name__}: {lines[0] if lines else ''}".rstrip(": "))) from None


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
    echo = _LauncherEchoFilter(sys.stderr)
    try:
        with contextlib.redirect_stderr(echo):
            main()
    except config_error_types() as e:
        print(f"error: {one_line(e)}{_experiment_hint()}", file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)
    except JobFailed as e:  # raised in a job of the sweep, handed back by the launcher
        close_progress_bars()
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except BaseException as e:
        close_progress_bars()  # a sweep's bar would share the error's line
        echo.release()
        if not isinstance(e, Exception):
            raise
        if (refusal := sbatch_refusal(e)) is not None:
            print(f"error: {refusal}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        if type(e).__name__ == "UncompletedJobError":  # submitit: a job of the sweep failed
            print(f"error: {failed_job(str(e))}", file=sys.stderr)
            sys.exit(1)
        if 'Could not detect "srun"' in str(e):  # submitit_slurm off a cluster
            print("error: hydra/launcher=submitit_slurm needs a SLURM cluster (no srun here): use "
                  "hydra/launcher=submitit_local or joblib on this machine", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        raise


def _experiment_hint() -> str:
    """evaluate.py has no experiment group: a user who gives it one is told where the scoring settings are."""
    if os.path.basename(sys.argv[0]) != "evaluate.py" or not any(
            a.lstrip("+").startswith("experiment=") for a in sys.argv[1:]):
        return ""
    return (" (evaluate.py has no experiment group: an experiment is a training setting; give evaluate.py the "
            "store and ensemble overrides, e.g. paths.root_dir=demo 'ensemble.groups=[[0,1,2]]' for the demo: "
            "docs/demo.md)")


class _LauncherEchoFilter:
    """sys.stderr minus the launchers' echoes of a failure that run_cli reports as one line itself.

    submitit prints a refused sbatch's stderr before raising it; Hydra prints "Error executing
    job with overrides: ..." before raising a job's error. The first is dropped; the second is
    held back and printed only if the error is not a JobFailed (which names its job).
    """

    def __init__(self, stream):
        self._stream, self._dropped, self.held = stream, False, ""

    def write(self, text: str) -> int:
        echo = bool(text.strip()) and all(line.startswith("sbatch: error:") for line in text.strip().splitlines())
        if echo or (self._dropped and text == "\n"):
            self._dropped = echo
            return len(text)
        self._dropped = False
        if text.startswith("Error executing job with overrides:"):
            self.held += text
            return len(text)
        self.release()
        return self._stream.write(text)

    def release(self) -> None:
        held, self.held = self.held, ""
        if held:
            self._stream.write(held)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def failed_job(message: str) -> str:
    """submitit's report of a job that left no result (killed, say) -> its last error line and its logs."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    # SLURM's own verdict (*** JOB 41 ON node CANCELLED AT ... ***, an oom-kill) beats srun's last words
    verdicts = [line for line in lines if "*** JOB " in line or "oom-kill" in line or "oom_kill" in line]
    last = (verdicts or lines or ["no output"])[-1]
    last = last.split(" error: ", 1)[1] if " error: " in last and "slurmstepd" in last.split()[0] else last
    last = last.strip("* ") if last.startswith("***") else last
    last = last[len("error: "):] if last.startswith("error: ") else last
    folder = next((os.path.dirname(w) for line in lines for w in line.split()
                   if w.endswith(("_result.pkl", "_log.out", "_log.err"))), "")
    return f"a job of the sweep failed: {last} (its logs: {folder or 'the sweep folder'}/)"


def sbatch_refusal(error: BaseException) -> str | None:
    """sbatch refused the sweep's jobs (submitit raises its stderr) -> one line saying what to set."""
    cause = error.__cause__
    if not isinstance(cause, subprocess.CalledProcessError) or "sbatch" not in os.path.basename(str(cause.cmd[0])):
        return None
    said = [line.split("error:", 1)[1].strip() for line in str(error).splitlines() if "error:" in line]
    text = " ".join(said) or str(error).strip()
    if "generic resource" in text.lower() or "gres" in text.lower():
        return ("sbatch refused the jobs: this cluster (or partition) has no GPUs to give each job "
                "(hydra.launcher.gpus_per_node): set hydra.launcher.gpus_per_node=0 to run on CPUs, or pick a "
                "partition with GPUs (hydra.launcher.partition=...)")
    if "invalid partition" in text.lower():
        name = text.split("invalid partition specified:", 1)[-1].split()[0] if "specified:" in text else "?"
        return (f"sbatch refused the jobs: partition {name!r} does not exist on this cluster: set "
                f"hydra.launcher.partition to one of {existing_partitions()} (sinfo -s), or null for the default")
    if "node configuration is not available" in text:
        return ("sbatch refused the jobs: no node has the CPUs, memory and GPUs asked for: lower "
                "hydra.launcher.cpus_per_task, mem_gb or gpus_per_node (sinfo -N -l shows what the nodes have)")
    return f"sbatch refused the jobs: {said[0] if said else text}: fix the hydra.launcher settings (sbatch flags)"


def existing_partitions() -> str:
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "the cluster's partitions"
    return ", ".join(sorted(set(out.split()))) or "the cluster's partitions"
