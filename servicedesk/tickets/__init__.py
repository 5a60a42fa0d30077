"""Tickets: categories with their own fields, numbering, workflow, comments, attachments, search."""
