"""`mu0 serve`: a Prefect server on loopback plus a process that executes the deployments.

One supervisor process (this one) starts two children, each in its own process group:
  1. `prefect server start --host 127.0.0.1 --port P` with PREFECT_HOME=<home>/prefect (SQLite
     there by default; `--database-url postgresql+asyncpg://...` for production),
  2. a runner that registers every deployment in deploy/prefect.yaml (names, parameters,
     schedules, concurrency limits) and executes their runs (`prefect.serve`, no work pool).
It writes <home>/serve.json (pids, URLs) so `mu0 serve --stop` from another shell can shut it
down; Ctrl-C or SIGTERM does the same: the runner gets SIGINT (graceful), then the server
SIGTERM, then whatever is left SIGKILL, always whole process groups.
Binding to anything but loopback requires an auth string (PREFECT_SERVER_API_AUTH_STRING).
"""

from __future__ import annotations

import base64
import importlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import typer
import yaml

from flows.processes import alive, group_alive, port_free, spawn, stop_group

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PREFECT_YAML = PROJECT_ROOT / "deploy" / "prefect.yaml"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
PID_FILE = "serve.json"


class ServeError(RuntimeError):
    """Something kept the platform from starting; the message says what and where the log is."""


def default_home() -> Path:
    return Path(os.environ.get("MU0_HOME", "~/.mu0")).expanduser()


@dataclass
class ServeOptions:
    home: Path = field(default_factory=default_home)
    host: str = "127.0.0.1"
    port: int = 4200
    database_url: str | None = None  # PREFECT_API_DATABASE_CONNECTION_URL; None = SQLite in home
    auth_string: str | None = None  # "user:password"; required when host is not loopback
    prefect_yaml: Path = PREFECT_YAML
    inbox: str | None = None  # overrides the inbox deployment's `inbox` parameter
    dataset: str | None = None  # overrides every deployment's `dataset` parameter
    interval: float | None = None  # overrides the inbox deployment's schedule (seconds)
    parameters: dict[str, Any] = field(default_factory=dict)  # more overrides for every deployment
    poll_seconds: float = 5.0  # PREFECT_RUNNER_POLL_FREQUENCY
    gpus: int = 1  # slots of the global "gpu" concurrency limit that GPU-heavy runs share
    startup_timeout: float = 90.0

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.url + "/api"


# ---------------------------------------------------------------- deployments from prefect.yaml


def load_specs(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    """The `deployments:` entries of a prefect.yaml (anchors resolved)."""
    return list((yaml.safe_load(Path(path).read_text()) or {}).get("deployments") or [])


def apply_overrides(specs: list[dict[str, Any]], opts: ServeOptions) -> list[dict[str, Any]]:
    """Copies of `specs` with the inbox, dataset and interval overrides applied."""
    out = []
    for spec in specs:
        spec = {**spec, "parameters": dict(spec.get("parameters") or {})}
        params = spec["parameters"]
        if opts.dataset is not None and "dataset" in params:
            params["dataset"] = opts.dataset
        if "inbox" in params:
            if opts.inbox is not None:
                params["inbox"] = opts.inbox
            if opts.interval is not None:
                spec["schedules"] = [{"interval": opts.interval, "active": True}]
        out.append(spec)
    return out


def load_flow(entrypoint: str):
    """`flows/ingest.py:ingest` -> the flow object, imported as a module of this package."""
    file, _, name = entrypoint.partition(":")
    module = file.removesuffix(".py").replace("/", ".").replace("\\", ".")
    return getattr(importlib.import_module(module), name)


def _schedules(spec: dict[str, Any]) -> list:
    from prefect.schedules import Cron, Interval, RRule

    out = []
    for s in spec.get("schedules") or []:
        common = {"timezone": s.get("timezone"), "active": s.get("active", True), "parameters": s.get("parameters")}
        if "interval" in s:
            out.append(Interval(s["interval"], **common))
        elif "cron" in s:
            out.append(Cron(s["cron"], **common))
        elif "rrule" in s:
            out.append(RRule(s["rrule"], **common))
        else:
            raise ServeError(f"deployment {spec['name']!r}: schedule needs interval, cron or rrule: {s}")
    return out


def build_deployments(specs: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> list:
    """RunnerDeployments (for `prefect.serve`) from prefect.yaml deployment entries.

    `extra` parameters go to every deployment whose flow takes them (e.g. runner="sequential"); a
    mapping goes only where the parameter's model has all its keys (an ingest `config` is not a pretrain one).
    """
    from prefect.client.schemas.objects import ConcurrencyLimitConfig

    out = []
    for spec in specs:
        flow_obj = load_flow(spec["entrypoint"])
        takes = flow_obj.parameters.properties
        models = flow_obj.parameters.definitions or {}

        def fits(key: str, value: Any) -> bool:
            ref = str(takes[key].get("$ref", "")).rsplit("/", 1)[-1]
            return not (isinstance(value, dict) and ref) or set(value) <= set(models.get(ref, {}).get("properties", {}))

        params = {**(spec.get("parameters") or {}), **{k: v for k, v in (extra or {}).items() if k in takes and fits(k, v)}}
        limit = spec.get("concurrency_limit")
        if isinstance(limit, dict):
            limit = ConcurrencyLimitConfig(**limit)
        out.append(
            flow_obj.to_deployment(
                name=spec["name"],
                parameters=params,
                description=spec.get("description"),
                tags=spec.get("tags"),
                version=spec.get("version"),
                schedules=_schedules(spec) or None,
                concurrency_limit=limit,
                enforce_parameter_schema=spec.get("enforce_parameter_schema", True),
            )
        )
    return out


def run_deployments(options_json: str) -> None:
    """Child process: register the deployments and execute their runs until interrupted."""
    from prefect import serve as prefect_serve

    from prefect.client.orchestration import get_client

    opts = _options_from_json(options_json)
    with get_client(sync_client=True) as client:  # GPU-heavy runs queue on this limit (flows/ingest.py)
        client.upsert_global_concurrency_limit_by_name("gpu", max(opts.gpus, 0))
    deployments = build_deployments(apply_overrides(load_specs(opts.prefect_yaml), opts), opts.parameters)
    prefect_serve(*deployments)


# ---------------------------------------------------------------- processes


def _options_to_json(opts: ServeOptions) -> str:
    d = asdict(opts)
    d.update(home=str(opts.home), prefect_yaml=str(opts.prefect_yaml), auth_string=None, database_url=None)
    return json.dumps(d)


def _options_from_json(text: str) -> ServeOptions:
    d = json.loads(text)
    d.update(home=Path(d["home"]), prefect_yaml=Path(d["prefect_yaml"]))
    return ServeOptions(**d)


def _base_env(opts: ServeOptions) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_") and k != "PREFECT_PROFILE"}
    env.update(
        PREFECT_HOME=str(opts.home / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"),
        RAY_AUTH_MODE=os.environ.get("RAY_AUTH_MODE", "disabled"),
    )
    return env


def server_env(opts: ServeOptions) -> dict[str, str]:
    env = _base_env(opts)
    env.pop("PREFECT_SERVER_API_AUTH_STRING", None)
    if opts.auth_string:
        env["PREFECT_SERVER_API_AUTH_STRING"] = opts.auth_string
    if opts.database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = opts.database_url
    # `--port` alone is not enough: the UI is told where the API is from these settings (default :4200)
    env.update(PREFECT_SERVER_API_HOST=opts.host, PREFECT_SERVER_API_PORT=str(opts.port))
    env.setdefault("PREFECT_UI_API_URL", opts.api_url)  # set it to the public URL when exposing the server
    return env


def runner_env(opts: ServeOptions) -> dict[str, str]:
    env = _base_env(opts)
    env.pop("PREFECT_SERVER_API_AUTH_STRING", None)
    env.update(PREFECT_API_URL=opts.api_url, PREFECT_RUNNER_POLL_FREQUENCY=str(max(1, round(opts.poll_seconds))))
    if opts.auth_string:
        env["PREFECT_API_AUTH_STRING"] = opts.auth_string
    return env


def server_command(opts: ServeOptions) -> list[str]:
    return [sys.executable, "-m", "prefect", "server", "start", "--host", opts.host, "--port", str(opts.port)]


def runner_command(opts: ServeOptions) -> list[str]:
    code = "import sys; from flows.serve import run_deployments; run_deployments(sys.argv[1])"
    return [sys.executable, "-c", code, _options_to_json(opts)]


def check_exposure(opts: ServeOptions) -> None:
    if opts.host not in LOOPBACK and not opts.auth_string:
        raise ServeError(
            f"refusing to bind {opts.host}: a server reachable from other machines needs basic auth. "
            "Pass --auth-string user:password (or set PREFECT_SERVER_API_AUTH_STRING), and give clients "
            "PREFECT_API_AUTH_STRING with the same value."
        )


def auth_header(auth_string: str | None) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(auth_string.encode()).decode()} if auth_string else {}


def api_get(url: str, auth_string: str | None = None, timeout: float = 5.0) -> Any:
    req = urllib.request.Request(url, headers=auth_header(auth_string))
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


def _log_tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def wait_healthy(opts: ServeOptions, proc: subprocess.Popen, log: Path) -> float:
    """Seconds until GET /api/health answers true; ServeError if the server dies or times out."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < opts.startup_timeout:
        if proc.poll() is not None:
            raise ServeError(f"prefect server exited with code {proc.returncode}; {log}:\n{_log_tail(log)}")
        try:
            if api_get(opts.api_url + "/health", timeout=2.0) is True:
                return time.monotonic() - t0
        except (urllib.error.URLError, OSError, ValueError):
            pass
        time.sleep(0.5)
    raise ServeError(f"prefect server not healthy after {opts.startup_timeout:.0f} s; {log}:\n{_log_tail(log)}")


def read_state(home: Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(home) / PID_FILE).read_text())
    except (OSError, ValueError):
        return None


def serve(opts: ServeOptions, echo=print) -> int:
    """Start server and runner, block until Ctrl-C / SIGTERM / `--stop` / a child dying; 0 on a clean stop."""
    check_exposure(opts)
    opts.home = Path(opts.home).expanduser().resolve()
    state = read_state(opts.home)
    if state and alive(state.get("supervisor")):
        raise ServeError(f"already running (pid {state['supervisor']}, {state['ui_url']}); stop it with: mu0 serve --stop")
    if not port_free(opts.host, opts.port):
        raise ServeError(f"port {opts.port} on {opts.host} is in use; pick another with --port")
    (opts.home / "prefect").mkdir(parents=True, exist_ok=True)
    logs = opts.home / "logs"
    stopping = {"sig": None}

    def on_signal(signum, _frame):
        stopping["sig"] = signum

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    server = runner = None
    try:
        t0 = time.monotonic()
        server = spawn(server_command(opts), server_env(opts), logs / "server.log")
        took = wait_healthy(opts, server, logs / "server.log")
        echo(f"prefect server healthy after {took:.1f} s: UI {opts.url}  API {opts.api_url}")
        runner = spawn(runner_command(opts), runner_env(opts), logs / "runner.log")
        state = {
            "supervisor": os.getpid(), "server": server.pid, "runner": runner.pid, "home": str(opts.home),
            "api_url": opts.api_url, "ui_url": opts.url, "started_at": time.time(), "startup_s": time.monotonic() - t0,
        }
        (opts.home / PID_FILE).write_text(json.dumps(state, indent=1))
        echo(f"serving deployments from {opts.prefect_yaml}; logs in {logs}; stop with Ctrl-C or `mu0 serve --stop`")
        while stopping["sig"] is None:
            for name, proc in (("server", server), ("runner", runner)):
                if proc.poll() is not None:
                    raise ServeError(f"{name} exited with code {proc.returncode}; see {logs / (name + '.log')}:\n"
                                     f"{_log_tail(logs / (name + '.log'))}")
            time.sleep(0.5)
        echo(f"stopping ({signal.Signals(stopping['sig']).name})")
        return 0
    finally:
        for name, proc, sig, grace in (("runner", runner, signal.SIGINT, 10.0), ("server", server, signal.SIGTERM, 15.0)):
            if proc is not None:
                t = time.monotonic()
                stop_group(proc.pid, sig, grace=grace)
                proc.wait()
                echo(f"{name} stopped in {time.monotonic() - t:.1f} s")
        pid_file = opts.home / PID_FILE
        if (read_state(opts.home) or {}).get("supervisor") == os.getpid():
            pid_file.unlink(missing_ok=True)
        for s, handler in old.items():
            signal.signal(s, handler)


def stop(home: Path | None = None, timeout: float = 40.0, echo=print) -> bool:
    """Stop the platform started with `home`; False when nothing was running there."""
    home = Path(home or default_home()).expanduser().resolve()
    state = read_state(home)
    if not state:
        echo(f"nothing running from {home} (no {PID_FILE})")
        return False
    sup = state.get("supervisor")
    if alive(sup):
        os.kill(sup, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while alive(sup) and time.monotonic() < deadline:
            time.sleep(0.2)
    for name in ("runner", "server"):  # the supervisor normally did this; a crashed one did not
        pid = state.get(name)
        if pid and group_alive(pid):
            stop_group(pid, signal.SIGTERM, grace=5.0)
    if alive(sup):
        os.kill(sup, signal.SIGKILL)
    (home / PID_FILE).unlink(missing_ok=True)
    echo(f"stopped (was pid {sup}, {state.get('ui_url')})")
    return True


# ---------------------------------------------------------------- CLI (mounted as `mu0 serve`)

serve_app = typer.Typer(add_completion=False, help="Run the platform: Prefect server + deployments.")


@serve_app.callback(invoke_without_command=True)
def serve_cli(
    home: Path = typer.Option(default_home(), envvar="MU0_HOME", help="state dir: prefect/ (PREFECT_HOME), logs/, serve.json"),
    host: str = typer.Option("127.0.0.1", help="bind address; anything but loopback needs --auth-string"),
    port: int = typer.Option(4200, min=1, max=65535),
    database_url: Optional[str] = typer.Option(
        None, envvar="MU0_DATABASE_URL", help="e.g. postgresql+asyncpg://prefect:pw@db:5432/prefect (default: SQLite in HOME)"),
    auth_string: Optional[str] = typer.Option(
        None, envvar="PREFECT_SERVER_API_AUTH_STRING", help="user:password for HTTP basic auth on the API and UI"),
    prefect_yaml: Path = typer.Option(PREFECT_YAML, help="deployments to register"),
    inbox: Optional[str] = typer.Option(None, help="inbox folder of the scheduled inbox deployment"),
    dataset: Optional[str] = typer.Option(None, help="dataset every deployment writes to"),
    interval: Optional[float] = typer.Option(None, min=1, help="inbox schedule interval in seconds"),
    param: list[str] = typer.Option([], help="KEY=JSON default parameter for every deployment that has KEY (repeatable)"),
    poll_seconds: float = typer.Option(5.0, min=1, help="how often the runner looks for runs to start"),
    gpus: int = typer.Option(1, min=0, help="GPU-heavy runs allowed at once (global concurrency limit 'gpu')"),
    stop_: bool = typer.Option(False, "--stop", help="stop the platform running from HOME and exit"),
):
    """Start a Prefect server on 127.0.0.1 and execute the deployments of deploy/prefect.yaml."""
    if stop_:
        raise typer.Exit(code=0 if stop(home) else 1)
    params = {}
    for kv in param:
        key, sep, value = kv.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected KEY=JSON, got {kv!r}", param_hint="--param")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    opts = ServeOptions(home=home, host=host, port=port, database_url=database_url, auth_string=auth_string,
                        prefect_yaml=prefect_yaml, inbox=inbox, dataset=dataset, interval=interval,
                        parameters=params, poll_seconds=poll_seconds, gpus=gpus)
    try:
        code = serve(opts, echo=typer.echo)
    except ServeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    raise typer.Exit(code=code)


if __name__ == "__main__":
    serve_app()
