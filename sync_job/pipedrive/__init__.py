"""Pipedrive API v2: async client, custom fields by name, payload mapping."""
