"""Pure: the standard (built-in) fields a mapping may write, by their API v2 key, with the kind of value each takes.

The keys, types and enums are those of the request bodies of `POST /api/v2/deals` and `POST /api/v2/persons` in
Pipedrive's OpenAPI spec (tests/test_standard_fields.py checks this table against it). A key the spec lists that a
row-by-row sync cannot sensibly own is `UNMAPPABLE`, with the reason a config error gives.
"""

from __future__ import annotations

from dataclasses import dataclass

from sync_job.pipedrive.entities import Entity
from sync_job.pipedrive.kinds import Kind


@dataclass(frozen=True, slots=True)
class StandardField:
    key: str
    kind: Kind


def _table(*fields: StandardField) -> dict[str, StandardField]:
    return {field.key: field for field in fields}


STANDARD: dict[Entity, dict[str, StandardField]] = {
    "deal": _table(
        StandardField("title", "text"),
        StandardField("value", "money"),
        StandardField("currency", "currency"),
        StandardField("person_id", "person"),  # mapped as the person's external id; sent as the person's id
        StandardField("owner_id", "user"),
        StandardField("org_id", "integer"),
        StandardField("pipeline_id", "integer"),
        StandardField("stage_id", "integer"),
        StandardField("status", "deal_status"),
        StandardField("probability", "number"),
        StandardField("lost_reason", "text"),
        StandardField("visible_to", "visibility"),
        StandardField("expected_close_date", "date"),
    ),
    "person": _table(
        StandardField("name", "text"),
        StandardField("owner_id", "user"),
        StandardField("org_id", "integer"),
        StandardField("emails", "contact"),  # one address per person: the primary one
        StandardField("phones", "contact"),
        StandardField("visible_to", "visibility"),
        StandardField("marketing_status", "marketing_status"),
    ),
}

# Keys the spec's request bodies have that a mapping refuses, and why (README "What cannot be mapped").
UNMAPPABLE: dict[Entity, dict[str, str]] = {
    "deal": {
        "is_deleted": "deleting is what mode 'mirror' does",
        "is_archived": "an archived deal can no longer be edited through the API",
        "archive_time": "an archived deal can no longer be edited through the API",
        "label_ids": "labels are a list of account-specific ids",
        "custom_fields": "map a custom field by its name instead",
        "close_time": "Pipedrive sets it when the status changes to won or lost",
        "won_time": "Pipedrive sets it when the status changes to won",
        "lost_time": "Pipedrive sets it when the status changes to lost",
    },
    "person": {
        "add_time": "it can only be set when the person is created",
        "label_ids": "labels are a list of account-specific ids",
        "postal_address": "a contact-sync field, not present on every account",
        "notes": "a contact-sync field, not present on every account",
        "im": "a contact-sync field, not present on every account",
        "birthday": "a contact-sync field, not present on every account",
        "job_title": "a contact-sync field, not present on every account",
        "custom_fields": "map a custom field by its name instead",
    },
}

# Keys the API sends back but does not accept: mapping one is a config error that says so.
READ_ONLY: dict[Entity, frozenset[str]] = {
    "deal": frozenset(
        {
            "id", "creator_user_id", "add_time", "update_time", "stage_change_time", "local_won_date",
            "local_lost_date", "local_close_date", "origin", "origin_id", "channel", "channel_id", "acv", "arr",
            "mrr", "first_won_time", "products_count", "files_count", "notes_count", "followers_count",
            "email_messages_count", "activities_count", "done_activities_count", "undone_activities_count",
            "participants_count", "last_incoming_mail_time", "last_outgoing_mail_time", "next_activity_id",
            "last_activity_id", "smart_bcc_email", "source_lead_id",
        }
    ),
    "person": frozenset(
        {
            "id", "first_name", "last_name", "update_time", "is_deleted", "picture_id", "open_deals_count",
            "related_open_deals_count", "closed_deals_count", "won_deals_count", "lost_deals_count",
            "next_activity_id", "last_activity_id", "last_incoming_mail_time", "last_outgoing_mail_time",
            "doi_status", "smart_bcc_email",
        }
    ),
}  # fmt: skip
