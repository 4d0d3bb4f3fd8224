"""Sensor observations (modelled after OGC SensorThings)."""

from fastapi import APIRouter

router = APIRouter(tags=["observations"])
lifespan = None
