"""Destinations the combined frame can be synced into (Pipedrive, PostgreSQL)."""
