"""Kafka Connect and its outbox connectors as one unit that can be brought back.

The embedded worker runs standalone: it keeps connector configs in memory only, so a
Connect process that was restarted (by ``choreo up``, a supervisor or a chaos run) has
no connectors until someone deploys them again. ``ensure_connect`` is that someone:
call it after restarting Connect, or instead of restarting it yourself.
"""

from __future__ import annotations

from choreo.stack import launcher
from choreo.stack.components import connect_component
from choreo.stack.connectors import deploy_outbox_connectors
from choreo.stack.settings import StackSettings

Report = launcher.Report

def ensure_connect(settings: StackSettings, report: Report = print,
                   timeout_s: float = 90.0) -> bool:
    """Start Connect unless it runs, deploy every outbox connector, wait until RUNNING.

    Idempotent and cheap on a healthy worker (three GETs). FAILED tasks on the way are
    restarted (see ``ConnectClient.wait_running``). Returns whether Connect was started
    or a connector deployed.
    """
    registry = launcher.registry_for(settings)
    started = False
    if registry.running("connect") is None:
        started = launcher.start_component(connect_component(settings), registry, settings,
                                        report)
    deployed = deploy_outbox_connectors(settings, settings.databases_relayed_by("cdc"), report,
                                        timeout_s)
    launcher.start_class_archive_dump(settings, registry)
    return started or deployed
