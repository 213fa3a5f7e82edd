"""When did a restarted consumer really come back: not healthy, but consuming again?

A consumer answers its health check once it holds its partition leases, but its first
events still wait for the fetch from its stored positions. The first event the new
process counts in its ``choreo_events_total`` metric marks the end of that gap, which
is what the quiescence bound has to cover.
"""

from __future__ import annotations

import time

import requests
from prometheus_client.parser import text_string_to_metric_families

from choreo.stack.drain import metrics_port
from choreo.stack.settings import StackSettings, is_consumer

POLL_S = 0.2


def metrics_url(settings: StackSettings, target: str) -> str | None:
    """A consumer process's /metrics (a replica's too): its restart includes taking
    partitions back; None for any other target."""
    if not is_consumer(target):
        return None
    return f"http://127.0.0.1:{metrics_port(settings, target)}/metrics"


def events_counted(url: str) -> float:
    text = requests.get(url, timeout=2).text
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples if sample.name == "choreo_events_total")


def longest_stall(urls: list[str], window_s: float, poll_s: float = 0.1) -> float:
    """The longest time any one consumer counted no event, over ``window_s`` from now.

    What a broker fault costs the flow: while a node is down, the partitions it led stall
    (producers cannot write them, consumers cannot read them) until another node leads
    them. Under the chaos load each consumer handles events every few tens of
    milliseconds, so a gap of seconds is that stall, not a quiet moment."""
    started = time.monotonic()
    last_count: dict[str, float] = {}
    last_change = dict.fromkeys(urls, started)
    longest = 0.0
    while (now := time.monotonic()) - started < window_s:
        for url in urls:
            try:
                count = events_counted(url)
            except requests.RequestException:
                continue
            if count != last_count.get(url):
                last_count[url] = count
                longest = max(longest, now - last_change[url])
                last_change[url] = now
        time.sleep(poll_s)
    return max([longest, *(time.monotonic() - changed for changed in last_change.values())])


def wait_consuming(url: str, timeout_s: float) -> float | None:
    """``time.monotonic()`` of the first poll that saw an event counted; None on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if events_counted(url) > 0:
                return time.monotonic()
        except requests.RequestException:
            pass
        time.sleep(POLL_S)
    return None
