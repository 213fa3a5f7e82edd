"""Start, find and stop the stack's processes by pid, and only those.

Every process the launcher starts gets a pid file holding its pid and its kernel
start time. The start time guards against pid reuse: after a reboot or a crash of
the launcher, a pid file whose process is gone (or whose pid now belongs to some
other program) is recognised as stale and never signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from choreo.stack.errors import StartError


def process_start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat; None when the process does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces; fields after its ')' are fixed.
    return int(stat.rsplit(")", 1)[1].split()[19])


def process_is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def process_tree(pid: int) -> list[int]:
    """A process and all its descendants (PostgreSQL's backends, say), those alive now."""
    tree = []
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        tree.append(current)
        pending.extend(int(child) for child in children)
    return tree


def resident_bytes(pid: int) -> int:
    """Memory of a process and all its descendants.

    Proportional set size, not RSS: PostgreSQL's backends all map the same shared
    buffers, and adding up their RSS would count those once per backend.
    """
    total = 0
    for current in process_tree(pid):
        try:
            rollup = Path(f"/proc/{current}/smaps_rollup").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        for line in rollup.splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1]) * 1024
    return total


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time used so far by a process and its descendants, user plus system.

    Each process's own time plus that of its children that exited and were waited for
    (fields 14-17 of /proc/PID/stat), so a PostgreSQL backend that ended during a
    measurement still counts, through the postmaster that reaped it.
    """
    ticks = 0
    for current in process_tree(pid):
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        ticks += sum(int(field) for field in fields[11:15])
    return ticks / CLOCK_TICKS


@dataclass(frozen=True)
class TrackedProcess:
    name: str
    pid: int
    start_ticks: int
    log_file: Path
    stop_signal: int = signal.SIGTERM

    def alive(self) -> bool:
        reap(self.pid)
        return process_start_ticks(self.pid) == self.start_ticks and not process_is_zombie(
            self.pid
        )


class ProcessRegistry:
    """The pid files of one state directory."""

    def __init__(self, pid_dir: Path, log_dir: Path) -> None:
        self.pid_dir = pid_dir
        self.log_dir = log_dir

    def _pid_file(self, name: str) -> Path:
        return self.pid_dir / f"{name}.json"

    def log_file(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def get(self, name: str) -> TrackedProcess | None:
        path = self._pid_file(name)
        try:
            data = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return TrackedProcess(
            name, data["pid"], data["start_ticks"], Path(data["log_file"]),
            data.get("stop_signal", signal.SIGTERM),
        )

    def running(self, name: str) -> TrackedProcess | None:
        tracked = self.get(name)
        return tracked if tracked is not None and tracked.alive() else None

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.pid_dir.glob("*.json")) if self.pid_dir.exists() else []

    def start(
        self,
        name: str,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> TrackedProcess:
        """Start detached in its own session so it outlives the launcher; log to a file."""
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_file = self.log_file(name)
        # A stop signal between the spawn and the pid file would leave a process that no
        # pid file names, which ``down`` could then never stop: hold it back until written.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            return self._spawn(name, command, log_file, env, cwd, user, stop_signal)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)

    def _spawn(self, name: str, command: Sequence[str], log_file: Path,
               env: Mapping[str, str] | None, cwd: Path | None, user: str | None,
               stop_signal: int) -> TrackedProcess:
        with log_file.open("ab") as log:
            process = DetachedProcess(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                user=user,
                start_new_session=True,
                # A child inherits the signal mask: give it back the stop signals held above.
                preexec_fn=_unblock_stop_signals,
            )
        _CHILDREN[process.pid] = process
        ticks = process_start_ticks(process.pid)
        if ticks is None:
            raise StartError(f"{name} exited at once; see {log_file}")
        tracked = TrackedProcess(name, process.pid, ticks, log_file, stop_signal)
        payload = {"pid": tracked.pid, "start_ticks": ticks, "log_file": str(log_file),
                   "stop_signal": int(stop_signal), "command": list(command)}
        self._pid_file(name).write_text(json.dumps(payload))
        return tracked

    def stop(self, name: str, timeout_s: float = 20.0) -> bool:
        """The process's stop signal, then SIGKILL after the timeout.

        Returns whether a live process was stopped.
        """
        tracked = self.get(name)
        if tracked is None:
            return False
        was_alive = tracked.alive()
        if was_alive:
            _signal(tracked.pid, tracked.stop_signal)
            deadline = time.monotonic() + timeout_s
            while tracked.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            if tracked.alive():
                _signal(tracked.pid, signal.SIGKILL)
                while tracked.alive():
                    time.sleep(0.05)
        self._pid_file(name).unlink(missing_ok=True)
        return was_alive

    def terminate(self, name: str, timeout_s: float) -> bool | None:
        """The stop signal to the recorded pid, then wait for the process to exit on its own.

        SIGKILL only once ``timeout_s`` is past. Returns None when it was not running, else
        whether it exited by itself. The pid file stays (the next start replaces it), so
        ``exit_status`` and ``launch``'s wait for the port still know whose it was.
        """
        tracked = self.running(name)
        if tracked is None:
            return None
        _signal(tracked.pid, tracked.stop_signal)
        deadline = time.monotonic() + timeout_s
        while tracked.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not tracked.alive():
            return True
        _signal(tracked.pid, signal.SIGKILL)
        while tracked.alive():
            time.sleep(0.05)
        return False

    def kill(self, name: str) -> None:
        """SIGKILL without a chance to clean up: what chaos runs and crash tests need."""
        tracked = self.running(name)
        if tracked is not None:
            _signal(tracked.pid, signal.SIGKILL)
            while tracked.alive():
                time.sleep(0.02)


STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def _unblock_stop_signals() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


class DetachedProcess(subprocess.Popen[bytes]):
    """A child meant to outlive this interpreter (the stack keeps running after ``up``).

    ``Popen`` warns when an object of a still-running child is collected; for these that
    is the normal case, not a leak: they are tracked by pid file and stopped by pid.
    """

    def __del__(self) -> None:
        return None


_CHILDREN: dict[int, DetachedProcess] = {}
"""Processes this interpreter started and has not yet seen exit, so ``reap`` can collect
their exit status instead of leaving zombies in a long-lived launcher or test run."""


_EXIT_STATUS: dict[int, int] = {}
"""Exit status of the children reaped so far, as ``Popen.returncode`` has it (a negative
number is the signal that ended it): the supervisor reports it in ``choreo status``."""


def reap(pid: int) -> None:
    """Collect an exited child so it does not linger as a zombie in a long-lived launcher."""
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _EXIT_STATUS[pid] = child.returncode
        del _CHILDREN[pid]


def exit_status(pid: int, wait_s: float = 5.0) -> int | None:
    """How a child of this interpreter that was seen dead ended; None if it is not our
    child (a process started by an earlier ``choreo up`` has another parent, who alone
    may know) or still runs after ``wait_s``.

    It waits because "seen dead" can come early: the main thread of a SIGKILLed
    multi-threaded process shows as a zombie in /proc while its other threads are still
    exiting, and ``waitpid`` reports it only once they are gone.
    """
    child = _CHILDREN.get(pid)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(wait_s)
        reap(pid)
    return _EXIT_STATUS.get(pid)


def describe_exit(status: int | None) -> str:
    """``signal SIGKILL``, ``code 3``, or ``unknown`` for a process we are not the parent of."""
    if status is None:
        return "unknown"
    if status < 0:
        try:
            return f"signal {signal.Signals(-status).name}"
        except ValueError:
            return f"signal {-status}"
    return f"code {status}"
