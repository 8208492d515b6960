"""Ombre's shadow package."""
