"""Data-lake files: bytes in the lake, metadata in the store."""

from fastapi import APIRouter

router = APIRouter(tags=["files"])
lifespan = None
