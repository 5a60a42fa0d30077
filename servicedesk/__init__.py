"""Servicedesk: an open-source, AI-native, multi-tenant help desk."""

__version__ = "0.1.0"
