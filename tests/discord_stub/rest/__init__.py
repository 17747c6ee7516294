"""Discord's REST API (the routes a slash-command bot uses) and the CDN route for files."""

from .api import API_PREFIX, GATEWAY_PATH, RestApi

__all__ = ["API_PREFIX", "GATEWAY_PATH", "RestApi"]
