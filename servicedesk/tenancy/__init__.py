"""Organizations (tenants), their resolution per request, and their settings."""
