"""The Debezium timer patch (infra/connect-patch): the bug it fixes, and that Connect gets it.

Debezium's ``Threads.timer`` answers "not expired" and "nothing remaining" during the
millisecond in which the elapsed time equals the interval; ``ChangeEventQueue.poll``
spins through that millisecond instead of waiting. A fake clock walks a 10 ms timer one
millisecond at a time and asks both questions: with Debezium's jars alone it finds the
millisecond (so the patch is still needed: when an upgrade fixes it, this test says
to drop the patch); with the class path Connect is started with, it finds none.
"""

import subprocess
from pathlib import Path

import pytest

from choreo.stack.components import connect_classpath
from choreo.stack.install import connect_lib_dir, ensure_installed
from choreo.stack.settings import StackSettings

TIMER_WALK = """
import io.debezium.util.Threads;
import java.time.Duration;

public class TimerWalk {
    public static void main(String[] args) {
        long[] now = {0};
        Threads.Timer timer = Threads.timer(() -> now[0], Duration.ofMillis(10));
        for (; now[0] <= 12; now[0]++) {
            if (!timer.expired() && timer.remaining().toMillis() <= 0) {
                System.out.println("spins at " + now[0] + " ms");
                System.exit(1);
            }
        }
        System.out.println("always waits");
    }
}
"""


@pytest.fixture(scope="module")
def timer_walk(stack_settings: StackSettings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    ensure_installed(stack_settings.artifact_dir, lambda line: None)
    folder = tmp_path_factory.mktemp("timer-walk")
    (folder / "TimerWalk.java").write_text(TIMER_WALK)
    subprocess.run(["javac", "-cp", f"{connect_lib_dir(stack_settings.artifact_dir)}/*",
                    "-d", str(folder), str(folder / "TimerWalk.java")], check=True)
    return folder


def walk(classpath: str, folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["java", "-cp", f"{folder}:{classpath}", "TimerWalk"],
                          capture_output=True, text=True, timeout=60)


def test_debeziums_own_timer_spins_for_a_millisecond(stack_settings: StackSettings,
                                                     timer_walk: Path) -> None:
    unpatched = walk(f"{connect_lib_dir(stack_settings.artifact_dir)}/*", timer_walk)
    assert (unpatched.returncode, unpatched.stdout.strip()) == (1, "spins at 10 ms")


def test_connect_class_path_waits_through_the_whole_interval(stack_settings: StackSettings,
                                                             timer_walk: Path) -> None:
    patched = walk(connect_classpath(stack_settings), timer_walk)
    assert (patched.returncode, patched.stdout.strip()) == (0, "always waits"), patched.stderr
