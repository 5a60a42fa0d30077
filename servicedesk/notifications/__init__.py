"""Notifications: in-app, email, web push; preferences, quiet hours, de-dup, digests."""
