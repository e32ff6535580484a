"""Run train.py as a user would, but SIGKILL the process at one exact point (for resume tests).

    python tests/killpoint.py <point> [train.py overrides ...]

Points (the states a crash can leave behind):
  mid_round_2_write round 2's mask file is half written (a temporary file, never renamed)
  mid_member_write  the member's temporary folder holds predictions and mask, not metrics/COMPLETE
  before_rename     the member is complete in its temporary folder but not yet moved into place
  after_1st_member  the first member of a several-member run (EDST) is in place, the rest not
Nothing here changes the code under test: the process kills itself from inside a wrapper.
"""
from __future__ import annotations

import os
import runpy
import signal
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str) -> None:
    from ticket_ensembles import store

    if point == "mid_round_2_write":
        savez = np.savez

        def half_written(file, **arrays):
            savez(file, **arrays)
            if ".round_2.npz." in str(file):  # store.save_npz's temporary file for round_2.npz
                size = os.path.getsize(file)
                os.truncate(file, size // 2)
                die()

        np.savez = half_written
    elif point == "mid_member_write":
        write_json = store.write_json

        def die_in_member(path, obj):
            if ".partial-" in str(path):
                die()
            write_json(path, obj)

        store.write_json = die_in_member
    elif point == "before_rename":
        def die_before_move(tmp, final_dir, overwrite):
            die()

        store._move_into_place = die_before_move
    elif point == "after_1st_member":
        move = store._move_into_place

        def move_then_die(tmp, final_dir, overwrite):
            move(tmp, final_dir, overwrite)
            die()

        store._move_into_place = move_then_die
    else:
        raise SystemExit(f"unknown kill point {point!r}")


if __name__ == "__main__":
    arm(sys.argv[1])
    sys.argv = [str(ROOT / "train.py"), *sys.argv[2:]]
    runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
