"""Progress out of the domains: typed events and the one :class:`Reporter` shape.

A domain function that has progress to show takes a reporter as a keyword argument and calls it
with frozen :class:`Event` subclasses it defines (``provisioner.smoke.events``, the build stream
of :mod:`provisioner.docker_api`, ``hosts.provision.ProvisionEvent``…). Events carry data, never
sentences: the CLI owns every word shown to the user and decides how to draw it (a live table on
a TTY, plain lines otherwise, nothing with ``--output json``).

The protocol is generic in the event type it accepts and contravariant in it, so a reporter for
every :class:`Event` (the CLI's one terminal object) fits wherever a domain asks for a reporter
of its own events, and so does :data:`NULL_REPORTER`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, Protocol, TypeVar


@dataclass(frozen=True)
class Event:
    """Base of every progress event."""


StatusT = TypeVar("StatusT", bound=StrEnum)


@dataclass(frozen=True)
class StepFinished(Event, Generic[StatusT]):
    """A named step ended (an image self-test, a demo step): its status, a detail, its duration."""

    name: str
    status: StatusT
    detail: str
    seconds: float = 0.0


EventT_contra = TypeVar("EventT_contra", bound=Event, contravariant=True)


class Reporter(Protocol[EventT_contra]):
    """Receives a domain's progress events, in order, on the thread that made them."""

    def __call__(self, event: EventT_contra, /) -> None:
        """Take one event."""
        ...


class NullReporter:
    """The reporter of a caller with no interest in progress: drops every event."""

    def __call__(self, event: Event, /) -> None:
        """Drop ``event``."""


#: Default for every ``report`` keyword argument.
NULL_REPORTER = NullReporter()
