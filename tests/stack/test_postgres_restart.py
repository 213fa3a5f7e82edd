"""A PostgreSQL started again after a SIGKILL waits for the old backends to let go of the
killed postmaster's shared memory (``wait_for_released_memory``). Pure: a made-up lock
file and shared memory table; the real restart runs in the supervisor and chaos tests."""

from __future__ import annotations

from pathlib import Path

from choreo.stack.components import wait_for_released_memory

HEADER = "       key      shmid perms   size  cpid  lpid nattch   uid   gid  cuid  cgid\n"


def lock_file(data_dir: Path, pid: int, shmid: int) -> None:
    data_dir.mkdir(exist_ok=True)
    (data_dir / "postmaster.pid").write_text(
        f"{pid}\n{data_dir}\n1796653222\n15432\n/tmp\n127.0.0.1\n  10594896    {shmid}\nready\n")


def table(tmp_path: Path, shmid: int, nattch: int) -> Path:
    path = tmp_path / "shm"
    path.write_text(HEADER + f"  10594896 {shmid} 600 56 2103 3857 {nattch} 101 0 101 0\n")
    return path


DEAD_PID = 2 ** 22 + 1  # above pid_max's default: no such process


def test_a_block_still_held_by_old_backends_is_waited_for(tmp_path: Path) -> None:
    lock_file(tmp_path / "data", DEAD_PID, 196608)
    held = table(tmp_path, 196608, nattch=2)
    assert not wait_for_released_memory(tmp_path / "data", timeout_s=0.2, table=held)
    assert wait_for_released_memory(tmp_path / "data", timeout_s=0.2,
                                    table=table(tmp_path, 196608, nattch=0))
    assert wait_for_released_memory(tmp_path / "data", timeout_s=0.2,
                                    table=table(tmp_path, 1, nattch=2))  # another block


def test_a_live_postmaster_or_no_lock_file_is_not_waited_for(tmp_path: Path) -> None:
    held = table(tmp_path, 196608, nattch=2)
    assert wait_for_released_memory(tmp_path / "none", timeout_s=5, table=held)
    lock_file(tmp_path / "data", 1, 196608)  # pid 1 is alive: PostgreSQL reports it
    assert wait_for_released_memory(tmp_path / "data", timeout_s=5, table=held)
