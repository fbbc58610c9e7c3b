"""Widgets of the `devloop up` screen, each rendering one slice of the core events."""
