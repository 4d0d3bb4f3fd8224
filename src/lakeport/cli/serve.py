"""``lakeport serve``: the platform server (observations, data-lake files, topics over HTTP)."""

from __future__ import annotations

from typing import Annotated

import typer

from lakeport.cli.common import stderr

StoreOption = Annotated[str | None, typer.Option(
    "--store", envvar="LAKEPORT_STORE", show_envvar=True, show_default=False,
    help="Platform store: sqlite:///path/to/file.db (default under LAKEPORT_HOME) or "
    "postgresql://user@host:5432/database (pip install 'lakeport[postgresql]').")]
LakeOption = Annotated[str | None, typer.Option(
    "--lake", envvar="LAKEPORT_LAKE", show_envvar=True, show_default=False,
    help="Where data-lake file bytes live: file:///folder (default under LAKEPORT_HOME), "
    "s3://bucket/prefix, abfs://container@account/prefix.")]


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0: every interface).")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8400,
    store: StoreOption = None,
    lake: LakeOption = None,
    streams: Annotated[str | None, typer.Option(
        "--streams", "--url", envvar="LAKEPORT_STREAMS", show_envvar=True, show_default=False,
        help="Topic engine behind the topic gateway and the recorder: file:///path (embedded, "
        "the default under LAKEPORT_HOME), memory://, nats://host:4222.")] = None,
    record: Annotated[list[str] | None, typer.Option(
        "--record", help="Store this topic's sensor readings as observations (repeatable), "
        "e.g. --record transformed-data.", show_default=False)] = None,
    max_body: Annotated[str | None, typer.Option(
        "--max-body", show_default=False,
        help="Largest request body of the API routes other than file uploads and CSV, e.g. "
        "64MB (the default); 413 above it.")] = None,
    max_upload: Annotated[str | None, typer.Option(
        "--max-upload", show_default=False,
        help="Largest file upload or append, e.g. 10GB (default 1TiB).")] = None,
    max_csv: Annotated[str | None, typer.Option(
        "--max-csv", show_default=False,
        help="Largest CSV observation upload, e.g. 256MB (the default).")] = None,
    max_fetch: Annotated[str | None, typer.Option(
        "--max-fetch", show_default=False,
        help="Payload bytes in one WebSocket fetch reply at most, e.g. 4MB (the default); "
        "a larger message goes alone.")] = None,
    header_timeout: Annotated[float | None, typer.Option(
        "--header-timeout", show_default=False,
        help="Seconds a connection has to send a request's line and headers (default 10).")]
    = None,
    body_timeout: Annotated[float | None, typer.Option(
        "--body-timeout", show_default=False,
        help="Seconds a request body may stop arriving before the connection is closed "
        "(default 60).")] = None,
    forward: Annotated[list[str] | None, typer.Option(
        "--forward", help="Forward this edge topic to a central side while serving "
        "(repeatable), e.g. raw-sensor-data=http://central:8400?api_key=lpk_...; see "
        "lakeport forward --help.", show_default=False)] = None,
    forward_site: Annotated[str | None, typer.Option(
        "--forward-site", help="The site name of --forward (default: the host name).",
        show_default=False)] = None,
    forward_max_rate: Annotated[str | None, typer.Option(
        "--forward-max-rate", help="Bytes per second on the wire at most, per --forward, "
        "e.g. 1MB/s.", show_default=False)] = None,
    workers: Annotated[int, typer.Option(
        "--workers", min=0, max=64, help="Task workers to start beside the server (0: none; "
        "more workers on other machines: lakeport worker --help).")] = 1,
    worker_concurrency: Annotated[int, typer.Option(
        "--worker-concurrency", min=1, max=1024, help="Task runs at once per local worker.")
    ] = 4,
    task_lost_after: Annotated[float | None, typer.Option(
        "--task-lost-after", min=1, show_default=False,
        help="Seconds after a worker's last heartbeat when its run is marked lost and "
        "retried (default 30).")] = None,
    task_log_cap: Annotated[str | None, typer.Option(
        "--task-log-cap", show_default=False,
        help="Bytes of each task log stream kept per attempt, the tail (default 16MB).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "warning",
) -> None:
    """Run the platform server until Ctrl-C.

    Every route but /health needs an API key: lakeport keys create --user NAME.
    The API is described at http://HOST:PORT/docs (OpenAPI at /openapi.json).
    """
    import contextlib

    import uvicorn

    from lakeport.server import ServerSettings
    from lakeport.server.runner import check_port, server_config

    options: dict[str, object] = {"host": host, "port": port, "record_topics": record or [],
                                  "workers": workers, "worker_concurrency": worker_concurrency}
    for key, value in (("store_url", store), ("lake_url", lake), ("streams_url", streams),
                       ("max_body_bytes", max_body), ("max_upload_bytes", max_upload),
                       ("max_csv_bytes", max_csv), ("max_fetch_bytes", max_fetch),
                       ("header_timeout", header_timeout), ("body_timeout", body_timeout),
                       ("task_lost_after", task_lost_after), ("task_log_cap", task_log_cap)):
        if value:
            options[key] = value
    if forward:
        from lakeport.forward import ForwardConfig

        options["forward"] = [ForwardConfig.from_spec(spec, site=forward_site,
                                                      max_rate=forward_max_rate)
                              for spec in forward]
    settings = ServerSettings(**options)
    check_port(host, port)
    stderr.print(f"lakeport server on http://{host}:{port} (store {settings.store_url}, "
                 f"lake {settings.lake_url}); API docs at /docs", markup=False)
    server = uvicorn.Server(server_config(settings, log_level))
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: uvicorn re-raises it once stopped
        server.run()
    if not server.started:
        raise SystemExit(3)  # uvicorn's startup failure: the log says why


__all__ = ["serve"]
