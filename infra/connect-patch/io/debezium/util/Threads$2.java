package io.debezium.util;

import java.time.Duration;

/**
 * Replaces the timer that {@code Threads.timer(Clock, Duration)} returns in Debezium 3.0.7.
 *
 * <p>Why: Debezium's timer says "not expired" while the elapsed milliseconds equal the
 * interval ({@code elapsed > time}) but "no time remaining" ({@code time - elapsed == 0}).
 * {@code ChangeEventQueue.poll()} waits only while some time remains, so for that whole
 * millisecond it loops without waiting: one millisecond of spinning in every
 * {@code poll.interval.ms}, in every task, busy or idle (27 % of a core for the stack's
 * three idle tasks at 10 ms). Expiring at {@code elapsed >= time} keeps both answers
 * consistent, so the loop always waits. The stack puts this class ahead of Debezium's
 * jars on Connect's class path (see docs/stack.md, "The Debezium timer patch").
 */
final class Threads$2 implements Threads.Timer {
    private final Threads.TimeSince start;
    private final Duration time;

    Threads$2(Threads.TimeSince start, Duration time) {
        this.start = start;
        this.time = time;
    }

    @Override
    public boolean expired() {
        return start.elapsedTime() >= time.toMillis();
    }

    @Override
    public Duration remaining() {
        return time.minusMillis(start.elapsedTime());
    }
}
