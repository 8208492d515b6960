"""Ombre's api package."""
