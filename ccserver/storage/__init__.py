"""The contact store: contact records, their timelines and agent state changes."""

from .database import create_schema, find_contacts, get_contact, make_engine
from .models import AgentEvent, Base, Contact, ContactEvent
from .recorder import ContactRecorder

__all__ = [
    "AgentEvent",
    "Base",
    "Contact",
    "ContactEvent",
    "ContactRecorder",
    "create_schema",
    "find_contacts",
    "get_contact",
    "make_engine",
]
