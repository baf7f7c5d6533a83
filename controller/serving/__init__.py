"""Serving mode: start a model server (harness ``serve``), drive it over HTTP, measure the window."""

from controller.serving.client import send_prompt
from controller.serving.run import execute, execute_all, summary, validate
from controller.serving.settings import EXPORT_FORMATS, EXPORT_IMAGE, ServeRequest, ServingFailed

__all__ = [
    "EXPORT_FORMATS",
    "EXPORT_IMAGE",
    "ServeRequest",
    "ServingFailed",
    "execute",
    "execute_all",
    "send_prompt",
    "summary",
    "validate",
]
