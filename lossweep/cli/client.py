"""The REST client commands: ``lossweep submit``, ``status``, ``cancel`` and ``report``.

They talk to ``--url`` (default: ``$LOSSWEEP_URL``, else the local service recorded by ``lossweep demo``,
else http://127.0.0.1:8000) with the token in ``$LOSSWEEP_TOKEN`` (else the demo's local token).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

DEFAULT_URL = "http://127.0.0.1:8000"
SERVICE_RECORD = "service.json"
TOKEN_FILE = "api_token"

UrlOpt = Annotated[str | None, typer.Option("--url", help="Service URL (default: $LOSSWEEP_URL or the local service).")]


def state_dir() -> Path:
    return Path(os.environ.get("LOSSWEEP_HOME") or Path.home() / ".lossweep").expanduser()


def default_url() -> str:
    if os.environ.get("LOSSWEEP_URL"):
        return os.environ["LOSSWEEP_URL"].rstrip("/")
    try:
        return str(json.loads((state_dir() / SERVICE_RECORD).read_text())["url"]).rstrip("/")
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_URL


def default_token() -> str | None:
    if os.environ.get("LOSSWEEP_TOKEN"):
        return os.environ["LOSSWEEP_TOKEN"].strip()
    try:
        return (state_dir() / TOKEN_FILE).read_text().strip() or None
    except OSError:
        return None


class ServiceError(Exception):
    """A one-line, user-facing failure."""


class Client:
    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 60.0) -> None:
        import httpx

        self.url = (url or default_url()).rstrip("/")
        token = token or default_token()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise ServiceError(
                f"no lossweep service at {self.url} (start one with `lossweep serve` or `lossweep demo`, "
                "or pass --url)"
            ) from exc
        except httpx.HTTPError as exc:
            raise ServiceError(f"{self.url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            try:
                body = response.json()
                message = body.get("message") or response.text
                errors = body.get("errors") or []
                field = errors[0].get("field") if errors and isinstance(errors[0], dict) else None
                if field and field not in message:
                    message = f"{field}: {message}"
            except (ValueError, AttributeError):
                message = response.text.strip()[:300]
            hint = " (set LOSSWEEP_TOKEN)" if response.status_code == 401 else ""
            raise ServiceError(f"{response.status_code}: {message}{hint}")
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()


def fail(command: str, exc: Exception) -> typer.Exit:
    typer.echo(f"lossweep {command}: {exc}", err=True)
    return typer.Exit(1)


def parse_sets(sets: list[str]) -> dict[str, Any]:
    """``--set`` items as overrides, parsed as ``lossweep sweep run`` parses them."""
    from search_spaces.spec.presets import parse_set_args

    try:
        return parse_set_args(sets)
    except ValueError as exc:
        raise ServiceError(str(exc)) from None


def set_dotted(doc: dict[str, Any], dotted: str, value: Any) -> None:
    node = doc
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def submission_body(target: str, sets: list[str], name: str | None) -> dict[str, Any]:
    """A SweepSpec from a YAML file (with ``--set`` applied here) or a preset submission."""
    import yaml

    from search_spaces.spec.sweep_spec import load_yaml

    overrides = parse_sets(sets)
    path = Path(target)
    if path.suffix in (".yaml", ".yml", ".json") or path.is_file():
        try:
            doc = load_yaml(path.read_text())
        except OSError as exc:
            raise ServiceError(f"cannot read {target}: {exc.strerror or exc}") from exc
        except yaml.YAMLError as exc:
            raise ServiceError(f"{target} is not valid YAML: {exc}") from exc
        if not isinstance(doc, dict):
            raise ServiceError(f"{target}: a sweep spec is a YAML mapping")
        for key, value in overrides.items():
            set_dotted(doc, key, value)
        if name:
            doc["name"] = name
        return doc
    body: dict[str, Any] = {"preset": target, "overrides": overrides}
    if name:
        body["name"] = name
    return body


def format_sweep(s: dict[str, Any]) -> str:
    counts = s.get("trial_counts") or {}
    from search_spaces.run.sweep_dir import FINAL_TRIAL_STATUSES

    done = sum(counts.get(k, 0) for k in FINAL_TRIAL_STATUSES)
    total = s.get("num_trials") or sum(counts.values()) or "?"
    parts = [f"{s['id']}  {s['status']:<9}  trials {done}/{total}"]
    live = {k: v for k, v in counts.items() if v and k in ("RUNNING", "DIVERGED", "ERROR")}
    if live:
        parts.append("(" + ", ".join(f"{v} {k.lower()}" for k, v in live.items()) + ")")
    best = s.get("best") or {}
    if best.get("val_loss") is not None:
        parts.append(f"best {best['val_loss']:.4f} [{best.get('method')}]")
    return "  ".join(parts)


def print_sweep_detail(s: dict[str, Any]) -> None:
    typer.echo(format_sweep(s))
    typer.echo(f"  name      {s['name']}  (owner {s['owner']}{', preset ' + s['preset'] if s.get('preset') else ''})")
    typer.echo(f"  message   {s['message']}")
    counts = s.get("trial_counts") or {}
    typer.echo("  trials    " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    best = s.get("best") or {}
    if best.get("val_loss") is not None:
        typer.echo(f"  best      val CE {best['val_loss']:.4f}, {best.get('method')} {best.get('params') or ''}")
    if s.get("ray_submission_id"):
        typer.echo(f"  ray job   {s['ray_submission_id']} ({s.get('ray_job_status')})")
    links = s.get("links") or {}
    for key in ("dashboard", "report", "trials", "best_config"):
        if links.get(key):
            typer.echo(f"  {key:<9} {links[key]}")
    for key, value in links.items():  # links added later (e.g. a Grafana board)
        if key not in ("self", "cancel", "dashboard", "report", "trials", "best_config") and value:
            typer.echo(f"  {key:<9} {value}")


def submit(
    target: Annotated[str, typer.Argument(help="A SweepSpec YAML file or a preset name (see `lossweep presets`).")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override KEY=VALUE (dotted keys); repeatable.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="Name of the sweep.")] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Repeat-safe submission: the same key and body give the same sweep.")
    ] = None,
    url: UrlOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the sweep resource as JSON.")] = False,
) -> None:
    """Submit a sweep to the service; prints its id."""
    try:
        body = submission_body(target, set_ or [], name)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        sweep = Client(url).json("POST", "/v1/sweeps", json=body, headers=headers)
    except ServiceError as exc:
        raise fail("submit", exc) from exc
    if json_out:
        typer.echo(json.dumps(sweep, indent=2))
        return
    typer.echo(f"submitted {sweep['id']} ({sweep['status']}: {sweep['message']})")
    if (sweep.get("links") or {}).get("dashboard"):
        typer.echo(f"  Ray job: {sweep['links']['dashboard']}")
    typer.echo(f"  follow:  lossweep status {sweep['id']}")


def status(
    sweep_id: Annotated[str | None, typer.Argument(help="A sweep id; without it, the latest sweeps.")] = None,
    url: UrlOpt = None,
    limit: Annotated[int, typer.Option(help="How many sweeps to list.")] = 20,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one sweep (status, trials, best so far, links) or list the latest sweeps."""
    try:
        client = Client(url)
        if sweep_id:
            data = client.json("GET", f"/v1/sweeps/{sweep_id}")
        else:
            data = client.json("GET", "/v1/sweeps", params={"limit": limit})
    except ServiceError as exc:
        raise fail("status", exc) from exc
    if json_out:
        typer.echo(json.dumps(data, indent=2))
    elif sweep_id:
        print_sweep_detail(data)
    elif not data["items"]:
        typer.echo("no sweeps yet (submit one with `lossweep submit demo`)")
    else:
        for item in data["items"]:
            typer.echo(format_sweep(item))


def cancel(sweep_id: Annotated[str, typer.Argument(help="The sweep to cancel.")], url: UrlOpt = None) -> None:
    """Cancel a sweep: its Ray job stops, its results so far are kept."""
    try:
        sweep = Client(url).json("POST", f"/v1/sweeps/{sweep_id}/cancel")
    except ServiceError as exc:
        raise fail("cancel", exc) from exc
    typer.echo(f"{sweep['id']}: {sweep['message']}")


def report(
    sweep_id: Annotated[str, typer.Argument(help="The sweep.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="File to write (default: the server's name).")]
    = None,
    format: Annotated[str, typer.Option("--format", help="html, md or json.")] = "html",
    url: UrlOpt = None,
) -> None:
    """Download a sweep's best-config report (partial while it runs)."""
    import re

    try:
        response = Client(url, timeout=300).request("GET", f"/v1/sweeps/{sweep_id}/report", params={"format": format})
    except ServiceError as exc:
        raise fail("report", exc) from exc
    if output is None:
        match = re.search(r'filename="([^"]+)"', response.headers.get("content-disposition", ""))
        output = Path(safe_filename(match.group(1) if match else "", f"lossweep-report.{format}"))
    output.write_bytes(response.content)
    typer.echo(str(output))


def safe_filename(suggested: str, fallback: str) -> str:
    """The server's suggested file name as a plain name in the current directory: no directories
    (``../``, ``/etc/``, ``C:\\``), no hidden or control characters; ``fallback`` when nothing is left."""
    import re

    name = re.split(r"[/\\]", suggested)[-1]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return name[:200] or fallback


def register(app: typer.Typer) -> None:
    """Adds ``submit``, ``status``, ``cancel`` and ``report`` to the ``lossweep`` app."""
    app.command("submit")(submit)
    app.command("status")(status)
    app.command("cancel")(cancel)
    app.command("report")(report)
