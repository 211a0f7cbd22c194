"""Builders of valid test data shared across the test folders."""
