"""Runnable examples: ``lakeport flow run examples.demo_step:process``."""
