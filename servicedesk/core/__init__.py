"""Infrastructure that knows no domain: database, errors, security, cache, limits, telemetry."""
