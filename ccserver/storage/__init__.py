"""The contact store: contact records, their timelines, agent state changes, customers."""

from .customers import (
    ComplaintRow,
    CustomerAccountRow,
    CustomerPhoneRow,
    CustomerRow,
    read_customers_csv,
    seed_customers,
)
from .database import find_contacts, get_contact, make_engine, recent_contacts
from .followups import FollowUp, FollowUpRow, FollowUpStore
from .migrate import create_schema, current_revision, upgrade
from .models import AgentEvent, Base, Contact, ContactEvent, JournalCheckpoint
from .recorder import ContactRecorder, RecoveryReport

__all__ = [
    "AgentEvent",
    "Base",
    "ComplaintRow",
    "Contact",
    "ContactEvent",
    "ContactRecorder",
    "CustomerAccountRow",
    "CustomerPhoneRow",
    "CustomerRow",
    "FollowUp",
    "FollowUpRow",
    "FollowUpStore",
    "JournalCheckpoint",
    "RecoveryReport",
    "create_schema",
    "current_revision",
    "find_contacts",
    "get_contact",
    "make_engine",
    "read_customers_csv",
    "recent_contacts",
    "seed_customers",
    "upgrade",
]
