"""All tables. Import this package to register every model on ``Base.metadata``."""

from .base import Base
from .campaigns import Campaign as Campaign  # registers every campaigns table
from .datastore import Attribute, Event, User
from .delivery import Attempt, Order, OrderPayload, OrderResult
from .health import TouchpointHealth
from .plugins import Plugin
from .projects import ApiKey, AuditEntry, Project, Space
from .protection import TouchpointProtection
from .touchpoints import Touchpoint, TouchpointSpace

__all__ = [
    "ApiKey",
    "Attempt",
    "Attribute",
    "AuditEntry",
    "Base",
    "Event",
    "Order",
    "OrderPayload",
    "OrderResult",
    "Plugin",
    "Project",
    "Space",
    "Touchpoint",
    "TouchpointHealth",
    "TouchpointProtection",
    "TouchpointSpace",
    "User",
]
