"""Computer-telephony integration: who is calling (customer lookup), screen pops, call control."""

from .customers import (
    Account,
    Complaint,
    Customer,
    CustomerDirectory,
    CustomerProvider,
    DatabaseCustomerProvider,
    DirectoryStats,
    Phone,
    RecentContact,
)

__all__ = [
    "Account",
    "Complaint",
    "Customer",
    "CustomerDirectory",
    "CustomerProvider",
    "DatabaseCustomerProvider",
    "DirectoryStats",
    "Phone",
    "RecentContact",
]
