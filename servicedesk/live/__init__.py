"""Live updates: WebSocket and SSE endpoints, rooms, fan-out of committed events, presence.

See docs/live.md for the protocol and the fan-out design.
"""
