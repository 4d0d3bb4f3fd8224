"""Exporters: topic → batches → Parquet (or CSV / JSON Lines) → a sink → ack."""
