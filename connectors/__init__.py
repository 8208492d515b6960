"""Ombre's connectors package."""
