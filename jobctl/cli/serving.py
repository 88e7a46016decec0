"""The commands of the HTTP door: serve, and the tokens it accepts
(token create, list, revoke). Starlette, uvicorn and prometheus_client load
only when `jobctl serve` runs."""

from typing import Annotated, Optional

import typer

from ..formats import Format
from ..frontend import out as _out, print_table as _print_table, say as _say
from ..errors import UsageError
from .app import FormatOpt, NoHeadersOpt, api_for, app, settings_for, token_app



@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(
        "--host", help="Address to listen on. Anything but loopback needs --certfile/--keyfile "
                       "or --insecure-tokens-in-cleartext.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8080,
    certfile: Annotated[Optional[str], typer.Option(
        "--certfile", help="TLS certificate (PEM); with --keyfile serves https.")] = None,
    keyfile: Annotated[Optional[str], typer.Option("--keyfile", help="TLS private key (PEM).")] = None,
    insecure_tokens_in_cleartext: Annotated[bool, typer.Option(
        "--insecure-tokens-in-cleartext",
        help="Listen on a non-loopback address without TLS: tokens and job data cross the "
             "network unencrypted (behind a TLS-terminating proxy only).")] = False,
    body_limit: Annotated[int, typer.Option(
        "--body-limit", help="Largest request body in bytes (larger: 413).")] = 1024 * 1024,
    metrics_window: Annotated[str, typer.Option(
        "--metrics-window", help="/metrics counts finished jobs started within this window.")] = "24h",
    log_level: Annotated[str, typer.Option(
        "--log-level", help="critical, error, warning, info or debug.")] = "info",
) -> None:
    """Serve the HTTP API, a web page and /metrics over the jobs database (needs jobctl[serve]).

    Example: jobctl serve --port 8080
    """
    from ..model import parse_duration

    window_s = parse_duration(metrics_window, option="--metrics-window")
    if window_s <= 0:
        raise UsageError("--metrics-window must be more than 0")
    settings = settings_for(ctx)
    try:
        from ..serve.server import serve as run
    except ImportError as exc:
        raise UsageError(f"jobctl serve needs the serve extra: pip install 'jobctl[serve]' "
                         f"({exc.name} is missing)") from None
    raise typer.Exit(run(settings, host=host, port=port, certfile=certfile, keyfile=keyfile,
                         cleartext_ok=insecure_tokens_in_cleartext, body_limit=body_limit,
                         metrics_window_s=window_s, log_level=log_level))


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The token's name (recorded as submitted_by).")],
    scope: Annotated[list[str], typer.Option(
        "--scope", help="read, submit or cancel; repeatable.")],
    procedures: Annotated[Optional[str], typer.Option(
        "--procedures", help="Only these procedures: names or patterns (* any run, ? one "
                             "character), comma-separated, whole names, case-insensitive.")] = None,
    expires: Annotated[Optional[str], typer.Option(
        "--expires", help="Valid for this long: 90d, 12h (default: until revoked).")] = None,
) -> None:
    """Create a token for `jobctl serve`; print it (only it, only now: only its hash is kept).

    Example: token=$(jobctl token create ci --scope submit --scope read --procedures 'ETL_*' --expires 90d)
    """
    from ..model import parse_duration

    expires_s = None if expires is None else parse_duration(expires, option="--expires")
    token = api_for(ctx, create=True).tokens.create(name, scope, procedures=procedures,
                                                     expires_s=expires_s)
    _out(token + "\n")
    _say(f"token {name} created; it is shown only this once")


TOKEN_COLUMNS = ("name", "scopes", "procedures", "state", "created_at", "expires_at",
                 "last_used_at", "revoked_at")


@token_app.command("list")
def token_list(ctx: typer.Context, fmt: FormatOpt = Format.table,
               no_headers: NoHeadersOpt = False) -> None:
    """The tokens: name, scopes, procedures, state, expiry and last use (never the token).

    Example: jobctl token list --format json
    """
    from .. import render

    rows = api_for(ctx).tokens.list()
    if fmt is Format.table:
        _print_table(["NAME", "SCOPES", "PROCEDURES", "STATE", "EXPIRES", "LAST USED"],
                     [[r["name"], r["scopes"], r["procedures"] or "*", r["state"],
                       render.local_time(r["expires_at"]) if r["expires_at"] else "never",
                       render.local_time(r["last_used_at"]) if r["last_used_at"] else "never"]
                      for r in rows], show_headers=not no_headers)
    else:
        _out(render.records(rows, fmt, TOKEN_COLUMNS, headers=not no_headers))


@token_app.command("revoke")
def token_revoke(ctx: typer.Context,
                 name: Annotated[str, typer.Argument(help="The token's name.")]) -> None:
    """Revoke a token: every server refuses it from its next request (401).

    Example: jobctl token revoke ci
    """
    api_for(ctx).tokens.revoke(name)
    _say(f"token {name} revoked")
