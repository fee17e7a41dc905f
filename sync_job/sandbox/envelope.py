"""Pipedrive response envelopes and the one exception handlers raise to answer with an error."""

from __future__ import annotations

from typing import Any

ERROR_INFO = "Please check developers.pipedrive.com"


class ApiError(Exception):
    """An API error answered with the standard error envelope."""

    def __init__(self, status: int, error: str, *, error_info: str = ERROR_INFO, code: str | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.error_info = error_info
        self.code = code

    def body(self) -> dict[str, Any]:
        return error_body(self.error, error_info=self.error_info, code=self.code, status=self.status)


def error_body(
    error: str, *, error_info: str = ERROR_INFO, code: str | None = None, status: int = 400
) -> dict[str, Any]:
    """{success:false, error, error_info, data:null, additional_data:null} (reference §2, §12)."""
    body: dict[str, Any] = {
        "success": False,
        "error": error,
        "error_info": error_info,
        "data": None,
        "additional_data": None,
    }
    if status == 401:
        body["errorCode"] = 401  # the documented 401 body carries it
    if code is not None:
        body["code"] = code
    return body


def ok(data: Any, next_cursor: str | bool | None = False) -> dict[str, Any]:
    """Success envelope; list responses pass next_cursor (None at the end), single ones leave it out."""
    body: dict[str, Any] = {"success": True, "data": data}
    if next_cursor is not False:
        body["additional_data"] = {"next_cursor": next_cursor}
    return body


def bad_request(message: str) -> ApiError:
    return ApiError(400, message, error_info="Validation failed: check the request body and parameters")


def not_found(entity: str, record_id: object) -> ApiError:
    return ApiError(404, f"{entity} {record_id} not found", error_info="Object was not found.")
