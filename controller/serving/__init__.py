"""Serving mode: start a model server (harness ``serve``), drive it over HTTP, measure the window."""

from controller.serving.client import send_prompt
from controller.serving.run import execute, summary, validate
from controller.serving.settings import ServeRequest, ServingFailed

__all__ = ["ServeRequest", "ServingFailed", "execute", "send_prompt", "summary", "validate"]
