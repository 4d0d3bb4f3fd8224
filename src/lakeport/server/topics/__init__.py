"""Topics over the network: HTTP produce, WebSocket consume."""

from fastapi import APIRouter

router = APIRouter(tags=["topics"])
lifespan = None
