"""The HTTP API (FastAPI): `create_app(settings, bundle_provider)`."""

from anime_recommender.api.app import create_app

__all__ = ["create_app"]
