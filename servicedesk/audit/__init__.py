"""The audit log: written by every domain in its own transaction, read by admins."""
