"""Delivery workers: EWS, Graph, SMTP and Maildir targets, retry tiers, dead-letter topic."""
