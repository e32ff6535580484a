"""Entry-point runs for the tests, forked from an interpreter that has already imported the heavy libraries.

A test that runs `python train.py ...` as a user would pays, before train.py does anything, about 5 s
of imports on these CPUs (torch, transformers' BERT code, datasets, Hydra) -- about a third of the
suite's time. The tests therefore start those runs through `tests/forkpython`, which stands in for
the interpreter: it hands its argv, working directory, environment and stdin/stdout/stderr to this
server (one per pytest worker, started on first use), which forks a child that runs the script as
`__main__` exactly as `python <script> <args>` would -- a separate process with its own argv, cwd,
environment and file descriptors, whose exit status (or the signal that ended it) becomes the
stand-in's. Only the already-imported modules are shared. What the stand-in cannot promise, it
leaves to the real interpreter: any interpreter option (`-c`, `-m`, `-u`, ...), and any run whose
environment differs from the server's in a variable that libraries read at import time (HF_*,
TORCH*, OMP_*, HOME, ...). SIGTERM, SIGINT and SIGHUP sent to the stand-in reach the child; if the
stand-in dies (SIGKILL, a timeout), the child is killed. TE_TEST_FORK=0 turns it all off.
"""
from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys

# Variables some preloaded library reads once, at import: a run that changes one gets a real interpreter
# (not TORCHINDUCTOR_CACHE_DIR: torch sets it in the test process itself, and children derive the same).
IMPORT_TIME_PREFIXES = ("HF_", "HUGGINGFACE", "TRANSFORMERS", "TOKENIZERS", "TORCH_", "TORCHDYNAMO", "PYTORCH", "ATEN_", "OMP_",
                        "MKL_", "ONEDNN", "DNNL", "KMP_", "CUDA", "NVIDIA", "PYTHON", "MPL", "XDG_", "LC_")
IMPORT_TIME_KEYS = {"HOME", "LANG", "LANGUAGE", "TMPDIR", "USER"}
PRELOAD = ["torch", "transformers", "transformers.models.bert.modeling_bert", "datasets", "hydra", "hydra.main",
           "omegaconf", "pandas", "scipy.stats", "sklearn", "ticket_ensembles.run", "ticket_ensembles.cli", "ticket_ensembles.config",
           "ticket_ensembles.known_keys", "ticket_ensembles.jobs", "ticket_ensembles.evaluation.report",
           "ticket_ensembles.evaluation.figures"]
REQUEST_TIMEOUT_S = 10  # a live stand-in sends its whole request at once, right after it connects


def _import_time_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items()
            if k in IMPORT_TIME_KEYS or k.startswith(IMPORT_TIME_PREFIXES) and k != "PYTHON"}  # the sweeps' own


def _send(conn: socket.socket, message: dict) -> None:
    conn.sendall((json.dumps(message) + "\n").encode())


def _recv_line(conn: socket.socket) -> dict | None:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            return None
        data += chunk
    return json.loads(data)


def _read_request(conn: socket.socket) -> tuple[dict | None, list[int]]:
    """A stand-in's request and its three descriptors; (None, fds) if it closed (was killed) before sending
    all of it, or sent something else -- the server must never wait on, or spin over, a dead stand-in."""
    conn.settimeout(REQUEST_TIMEOUT_S)
    fds: list[int] = []
    try:
        raw, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        while raw and not raw.endswith(b"\n"):
            chunk = conn.recv(1 << 20)
            if not chunk:
                return None, fds
            raw += chunk
        conn.settimeout(None)
        request = json.loads(raw) if raw else None
        return (request if isinstance(request, dict) and {"argv", "cwd", "env"} <= request.keys() else None), fds
    except (OSError, ValueError):  # timed out, reset, not JSON
        return None, fds


def _run_child(request: dict, fds: list[int]) -> int:
    """In the forked child: become `python <script> <args>` and run it; returns its exit code."""
    import runpy

    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    script = request["argv"][0]
    sys.argv = list(request["argv"])
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    try:
        runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as e:  # as the interpreter treats it: None is 0, a message is printed and is 1
        code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
        if not isinstance(e.code, int) and e.code is not None:
            print(e.code, file=sys.stderr)
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # noqa: BLE001 - what an uncaught exception does to `python script.py`
        import traceback

        traceback.print_exc()
        code = 1
    return code


def _supervise(conn: socket.socket, request: dict, fds: list[int]) -> int | None:
    """In the first fork: fork the run, tell the stand-in its pid, then its status; kill it if the stand-in goes."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    pid = os.fork()
    if pid == 0:
        conn.close()
        return _run_child(request, fds)
    for fd in fds:
        os.close(fd)
    reaped = False
    try:
        _send(conn, {"pid": pid})
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                reaped = True
                _send(conn, {"status": os.waitstatus_to_exitcode(status)})
                break
            readable, _, _ = select.select([conn], [], [], 0.1)
            if readable and not conn.recv(1):
                raise ConnectionError("the stand-in is gone")
    except OSError:  # the stand-in is gone (killed, even before it heard the pid): so is its run
        if not reaped:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    os._exit(0)


def _exit_as_the_interpreter_does(code: int) -> None:
    """What `python script.py` does after the script: wait for its non-daemon threads, run the atexit
    functions, flush stdout and stderr, exit -- without tearing down thousands of preloaded modules (seconds)."""
    import atexit
    import threading

    threading._shutdown()  # noqa: SLF001 - the interpreter's own step
    atexit._run_exitfuncs()  # noqa: SLF001
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def serve(path: str, preload: list[str] = PRELOAD) -> int:
    before = _import_time_env(dict(os.environ))
    for name in preload:
        __import__(name)
    after = _import_time_env(dict(os.environ))  # some imports set variables of their own (sklearn: KMP_*)
    parent = os.getppid()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # first forks are reaped by the kernel
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path + ".tmp")
    listener.listen(16)
    os.replace(path + ".tmp", path)  # the socket appears once the imports are done
    while os.getppid() == parent:
        if not select.select([listener], [], [], 1.0)[0]:
            continue
        conn, _ = listener.accept()
        request, fds = _read_request(conn)
        try:  # whatever becomes of the request, the server's copies of its socket and descriptors are closed
            if request is None:  # a stand-in that died before it finished asking: nothing to run, serve the next
                continue
            theirs = _import_time_env(request["env"])
            differ = sorted(k for k in {*before, *after, *theirs} if theirs.get(k) not in (before.get(k), after.get(k)))
            if differ or len(fds) != 3:
                print(f"real interpreter for {request['argv'][:1]}: {differ} differ", file=sys.stderr, flush=True)
                _send(conn, {"fallback": True})
                continue
            if os.fork() == 0:
                listener.close()
                code = _supervise(conn, request, fds)  # returns only in the run itself, with its exit code
                _exit_as_the_interpreter_does(code)  # os._exit: the child never reaches the finally below
        finally:
            conn.close()
            for fd in fds:
                os.close(fd)
    return 0


def run(argv: list[str]) -> int:
    """The stand-in: `forkpython <script.py> <args>` through the server, else the real interpreter."""
    path = os.environ.get("TE_FORKSERVER")
    script = argv[0] if argv else ""
    if (path and os.environ.get("TE_TEST_FORK", "1") != "0" and script.endswith(".py") and os.path.isfile(script)
            and os.path.exists(path)):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(path)
        env = {k: v for k, v in os.environ.items() if k != "TE_FORKSERVER"}
        socket.send_fds(conn, [(json.dumps({"argv": argv, "cwd": os.getcwd(), "env": env}) + "\n").encode()],
                        [0, 1, 2])
        first = _recv_line(conn)
        if first and "pid" in first:
            pid = first["pid"]
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, lambda s, _frame: os.kill(pid, s))
            last = _recv_line(conn)
            status = last["status"] if last else 1
            if status < 0:  # ended by a signal: so does the stand-in
                if -status != signal.SIGKILL:
                    signal.signal(-status, signal.SIG_DFL)
                os.kill(os.getpid(), -status)
            return status
    os.execv(sys.executable, [sys.executable, *argv])
    return 1  # not reached


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:  # serve PATH [MODULE ...]: the modules to preload, PRELOAD by default
        code = serve(sys.argv[2], sys.argv[3:] or PRELOAD)
        sys.exit(code)
    sys.exit(run(sys.argv[1:]))
