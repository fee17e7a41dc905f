"""Destinations the combined frame can be synced into, registered by kind (registry.py): Pipedrive, PostgreSQL."""
