"""Job states for the SLURM launcher on a cluster without accounting: sacct, else squeue.

submitit learns that a job ended from its result file or from ``sacct``. A job killed from
outside (out of memory, ``scancel``, a node failure) writes no result file, and where SLURM
has no accounting ``sacct`` fails, so the launching command would wait forever. With
:func:`watch_without_accounting` submitit asks ``python -m ticket_ensembles.slurm_state`` for
the states: sacct's own answer where accounting works, else squeue's, where a job that has
left the queue is reported as ``ENDED`` (submitit then reads its log and reports it).
"""
from __future__ import annotations

import subprocess
import sys

SACCT_FORMAT = ["-o", "JobID,State,NodeList", "--parsable2"]
GONE = "ENDED"  # not one of submitit's "still running" states


def watch_without_accounting() -> None:
    """Make submitit's SLURM watcher call this module instead of sacct (launching process only)."""
    from submitit.slurm.slurm import SlurmInfoWatcher

    def make_command(self) -> list[str] | None:
        to_check = sorted(self._registered - self._finished)
        return [sys.executable, "-m", __name__, *to_check] if to_check else None

    SlurmInfoWatcher._make_command = make_command


def states(job_ids: list[str]) -> tuple[int, str, str]:
    """(exit code, sacct-style output, stderr) for ``job_ids`` (``<id>`` or ``<array id>_<task>``)."""
    mains = sorted({j.split("_")[0] for j in job_ids})
    sacct = _run(["sacct", *SACCT_FORMAT, *[f"--jobs={m}" for m in mains]])
    if sacct.returncode == 0:
        return 0, sacct.stdout, ""
    queue = _run(["squeue", "-h", "-r", "-o", "%i|%T|%N", f"--jobs={','.join(mains)}"])
    if queue.returncode != 0 and "invalid job id" not in queue.stderr.lower():
        return 1, "", sacct.stderr + queue.stderr  # no answer at all: submitit keeps polling
    listed = {line.split("|")[0]: line for line in queue.stdout.splitlines() if line.strip()}
    lines = ["JobID|State|NodeList", *listed.values()]
    lines += [f"{j}|{GONE}|" for j in job_ids if j not in listed]
    return 0, "\n".join(lines) + "\n", ""


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        return subprocess.CompletedProcess(cmd, 1, "", f"{cmd[0]}: {e}\n")


def main(argv: list[str]) -> int:
    code, out, err = states(argv)
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
