"""``runnerctl pipelines``: the latest pipeline of every project of a group, once or watched."""

from provisioner.monitor.model import (
    FAILED_EXIT,
    Change,
    MonitorSpec,
    RefMode,
    Row,
    Snapshot,
    SortKey,
)
from provisioner.monitor.service import GroupMonitor, watch

__all__ = [
    "FAILED_EXIT",
    "Change",
    "GroupMonitor",
    "MonitorSpec",
    "RefMode",
    "Row",
    "Snapshot",
    "SortKey",
    "watch",
]
