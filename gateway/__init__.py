"""Ombre's gateway package."""
