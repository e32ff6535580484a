"""tests/forkpython (the tests' stand-in interpreter): a run is its own process, as `python script.py` is."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT, entry_python

SCRIPT = """import json, os, signal, sys
print(json.dumps({"argv": sys.argv, "cwd": os.getcwd(), "mine": os.environ.get("TE_MINE"), "pid": os.getpid(),
                  "modules": len(sys.modules), "main": __name__}), flush=True)
if sys.argv[1] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
if sys.argv[1] == "wait":
    import time
    time.sleep(60)
sys.exit(int(sys.argv[1]) if sys.argv[1].isdigit() else "a message")
"""


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "probe.py"
    path.write_text(SCRIPT)
    return path


def run(script, *args, env=None, python=None):
    res = subprocess.run([python or entry_python(), str(script), *args], cwd=script.parent, capture_output=True,
                         text=True, timeout=120, env={**os.environ, **(env or {})})
    return res, json.loads(res.stdout.splitlines()[0])


def test_a_forked_run_has_its_own_argv_cwd_env_and_exit_status(script):
    if entry_python() == sys.executable:
        pytest.skip("TE_TEST_FORK=0: no stand-in")
    res, seen = run(script, "3", "x=y", env={"TE_MINE": "yes"})
    assert res.returncode == 3 and seen["argv"] == [str(script), "3", "x=y"] and seen["cwd"] == str(script.parent)
    assert seen["mine"] == "yes" and seen["main"] == "__main__" and seen["pid"] != os.getpid()
    assert seen["modules"] > 1000  # forked from the preloaded server, not a fresh interpreter
    res, _ = run(script, "message")
    assert res.returncode == 1 and res.stderr.strip() == "a message"  # sys.exit("...") as the interpreter does it
    res, _ = run(script, "kill")
    assert res.returncode == -signal.SIGKILL  # the signal that ended the run ends the stand-in


def test_a_run_the_server_cannot_promise_takes_the_real_interpreter(script):
    _, forked = run(script, "0", env={"HOME": str(script.parent)})  # read at import by some libraries
    assert forked["modules"] < 200
    res = subprocess.run([entry_python(), "-c", "import sys; print(len(sys.modules))"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and int(res.stdout) < 200


def test_sigterm_reaches_the_run_and_a_killed_stand_in_takes_its_run_along(script):
    if entry_python() == sys.executable:
        pytest.skip("TE_TEST_FORK=0: no stand-in")
    for sig in (signal.SIGTERM, signal.SIGKILL):
        proc = subprocess.Popen([entry_python(), str(script), "wait"], stdout=subprocess.PIPE, text=True)
        child = json.loads(proc.stdout.readline())["pid"]
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == -sig
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{child}") and time.monotonic() < deadline:
            with open(f"/proc/{child}/stat") as f:
                if f.read().split()[2] == "Z":  # a zombie until its supervisor reaps it
                    break
            time.sleep(0.05)
        assert not os.path.exists(f"/proc/{child}") or open(f"/proc/{child}/stat").read().split()[2] == "Z"


def test_a_stand_in_killed_at_any_moment_of_its_start_leaves_no_run_behind(tmp_path):
    """Killed after it asked for the run but before it heard the run's pid, the stand-in must still take the
    run along (its supervisor's first message then fails: it kills the run instead of dying before it)."""
    if entry_python() == sys.executable:
        pytest.skip("TE_TEST_FORK=0: no stand-in")
    sleeper = tmp_path / "sleeper.py"
    sleeper.write_text("import os, sys, time\nopen(sys.argv[1], 'w').write(str(os.getpid()))\ntime.sleep(60)\n")
    procs = []
    for i in range(12):  # each killed at another moment across the window between the request and the pid
        procs.append(subprocess.Popen([entry_python(), str(sleeper), str(tmp_path / f"pid_{i}")]))
        time.sleep(0.04 + 0.015 * i)
        procs[-1].send_signal(signal.SIGKILL if i % 2 else signal.SIGTERM)
    for proc in procs:
        proc.wait(timeout=60)
    time.sleep(1.5)  # a run that outlived its stand-in has written its pid by now
    left = [pid for pid in (int(p.read_text() or 0) for p in tmp_path.glob("pid_*")) if pid and _alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == []


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for its parent."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_a_stand_in_that_dies_before_its_request_is_whole_does_not_stop_the_server(tmp_path):
    """A stand-in killed between connecting and sending (the moment the test above can hit) once left the
    server spinning over the closed connection: every later run of that pytest worker hung (CI, stop 26)."""
    sock = tmp_path / "sock"
    # a server of its own, preloading one module a fresh interpreter lacks: a forked run is told apart by it
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "forkserver.py"), "serve", str(sock), "decimal"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        for sent in (b"", b'{"argv": ["x.py"', b"not json\n", b'["a", "list"]\n'):  # dead after 0, part, junk
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.connect(str(sock))
                conn.sendall(sent)
        probe = tmp_path / "probe.py"
        probe.write_text("import sys\nprint('decimal' in sys.modules, sys.argv[1:])\n")
        env = {**os.environ, "TE_FORKSERVER": str(sock), "TE_TEST_FORK": "1"}
        res = subprocess.run([str(ROOT / "tests" / "forkpython"), str(probe), "a"], env=env, capture_output=True,
                             text=True, timeout=60)
        assert (res.returncode, res.stdout) == (0, "True ['a']\n"), res.stderr  # forked by the same server
        assert server.poll() is None
    finally:
        server.kill()
        server.wait()
