"""The history tab of an agent's ticket page: audit entries as sentences (who did what, and the
before → after of the fields people care about)."""

from __future__ import annotations

import uuid
from typing import Any

from servicedesk.models import User
from servicedesk.tickets.schemas import CategoryRead
from servicedesk.web.templating import PRIORITY_LABELS, STATUS_LABELS

ACTIONS = {
    "ticket.created": "opened the ticket",
    "ticket.updated": "changed the ticket",
    "ticket.assigned": "changed the assignee",
    "ticket.bulk_updated": "changed the ticket (bulk action)",
    "ticket.status_changed": "changed the status",
    "comment.created": "added a comment",
    "comment.updated": "edited a comment",
    "comment.deleted": "deleted a comment",
    "attachment.added": "attached a file",
    "attachment.deleted": "removed a file",
}
SHOWN_CHANGES = {
    "status": "Status",
    "priority": "Priority",
    "assignee_id": "Assignee",
    "department_id": "Department",
    "category_id": "Category",
    "subcategory_id": "Sub-category",
    "tags": "Tags",
    "subject": "Subject",
    "rejection_reason": "Reason",
    "filename": "File",
}


def history_rows(
    entries: list[Any], users: dict[uuid.UUID, User], cats: dict[uuid.UUID, CategoryRead]
) -> list[dict[str, Any]]:
    """Audit entries as sentences: who did what, and the before → after of known fields."""

    def text(key: str, value: Any) -> str:
        if value is None or value == [] or value == "":
            return "none"
        if isinstance(value, list):
            return ", ".join(str(v) for v in value)
        if key == "status":
            return STATUS_LABELS.get(str(value), str(value))
        if key == "priority":
            return PRIORITY_LABELS.get(str(value), str(value))
        try:
            ref = uuid.UUID(str(value))
        except ValueError:
            return str(value)
        if ref in users:
            return users[ref].full_name
        if ref in cats:
            return cats[ref].name
        return "another record"

    rows = []
    for e in reversed(entries):
        new = e.new_values or {}
        old = e.old_values or {}
        what = ACTIONS.get(e.action, e.action)
        if e.action == "comment.created":
            what = "added an internal note" if new.get("is_internal") else "replied"
        changes = []
        if e.action != "ticket.created":
            changes = [
                (label, text(k, old.get(k)) if k in old else None, text(k, new[k]))
                for k, label in SHOWN_CHANGES.items()
                if k in new
            ]
        who = users.get(e.actor_id) if e.actor_id else None
        rows.append(
            {
                "who": who.full_name if who else "System",
                "what": what,
                "changes": changes,
                "at": e.created_at,
            }
        )
    return rows
