"""Users, registration and approval, sign-in, sessions, two-factor, roles, departments."""
