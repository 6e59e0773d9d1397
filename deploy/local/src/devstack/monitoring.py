"""The metrics stack of the local platform: Prometheus scraping every process, its recording and
alert rules, and Alertmanager sending the alerts to the mail sink.

Both come from Debian's packages (`prometheus`, `prometheus-alertmanager`) without root:
`apt-get download` fetches the .deb files apt verifies against its package lists, and
`dpkg-deb -x` unpacks them into the user cache with the JavaScript libraries of Prometheus's web
UI (Debian ships them as packages of their own; the UI's files link to them). On a system without
apt, the command to install them is printed. Debian's Alertmanager reads its default notification
template from a fixed directory under /usr/share, where only the installed package puts it: the
unpacked binary gets that one path rewritten, byte for byte, to one of the same length that means
"the working directory" (`_relocate_templates`), and devstack starts it where the template is.

`start(...)` writes, under `<root>/prometheus/`: the configuration (deploy/prometheus/prometheus.yml
with the local intervals and Alertmanager's address), the targets file made from
`PlatformInfo.metrics` (every process), the rules (deploy/prometheus/rules/*.yml, copied), and
Alertmanager's configuration (routing every alert by e-mail to the mail sink).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from devstack import install
from devstack.parts import Running
from devstack.process import spawn

DEV_PROMETHEUS_PORT = 9090
DEV_ALERTMANAGER_PORT = 9093
SCRAPE_INTERVAL = "5s"
"""The local platform's scrape and rule evaluation interval: a step of the demo shows within
seconds (production: deploy/prometheus/prometheus.yml's 15 s)."""
OPS_EMAIL = "ops@referrals.localhost"
"""Where Alertmanager sends the alerts: the operations address of the mail sink."""

PACKAGES = (
    "prometheus",
    "prometheus-alertmanager",
    # The libraries the web UI's static files link to (Debian's `prometheus` depends on them).
    "libjs-bootstrap4",
    "libjs-popper.js",
    "libjs-jquery",
    "libjs-jquery-hotkeys",
    "libjs-moment",
    "libjs-moment-timezone",
    "libjs-mustache",
    "libjs-eonasdan-bootstrap-datetimepicker",
    "libjs-rickshaw",
    "libjs-d3",
    "fonts-glyphicons-halflings",
)
INSTALL_HINT = "sudo apt-get install prometheus prometheus-alertmanager"


def config_dir() -> Path:
    """deploy/prometheus: the configuration, rules and their tests, shared with compose and k8s."""
    packaged = resources.files("devstack").joinpath("prometheus")
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[3] / "prometheus"  # running from the source tree


@dataclass(frozen=True)
class Binaries:
    """Prometheus, promtool, Alertmanager and amtool, and the web UI's assets."""

    home: Path

    @property
    def prometheus(self) -> Path:
        return self.home / "usr/bin/prometheus"

    @property
    def promtool(self) -> Path:
        return self.home / "usr/bin/promtool"

    @property
    def alertmanager(self) -> Path:
        return self.home / "usr/bin/prometheus-alertmanager"

    @property
    def amtool(self) -> Path:
        return self.home / "usr/bin/amtool"

    @property
    def web_assets(self) -> Path:
        return self.home / "usr/share/prometheus/web"

    def version(self) -> str:
        out = subprocess.run(
            [str(self.prometheus), "--version"], capture_output=True, text=True, check=False
        )
        return (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else ""


def ensure_prometheus(console: Console) -> Binaries:
    """Debian's Prometheus and Alertmanager unpacked in the user cache (`PACKAGES`), fetched with
    `apt-get download` on first use; no root needed."""
    home = install.cache_dir() / "prometheus-debian"
    marker = home / ".complete"
    stamp = " ".join(PACKAGES)
    if marker.exists() and marker.read_text().split("\n", 1)[0] == stamp:
        return Binaries(home)
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise install.InstallError(
            "Prometheus and Alertmanager come from Debian's packages, and this system has no "
            f"apt-get: install them with your package manager (on Debian: `{INSTALL_HINT}`)"
        )
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="prometheus-debs-") as downloads:
        try:
            install._run_with_progress(
                console,
                ["apt-get", "download", "-q", *PACKAGES],
                cwd=Path(downloads),
                what="fetching Debian's Prometheus and Alertmanager packages with `apt-get "
                "download`",
            )
        except install.InstallError as exc:
            raise install.InstallError(
                f"{exc}\n(if apt does not know the packages, run `sudo apt-get update`; or "
                f"install them: `{INSTALL_HINT}`)"
            ) from exc
        debs = sorted(Path(downloads).glob("*.deb"))
        for deb in debs:
            subprocess.run(["dpkg-deb", "-x", str(deb), str(home)], check=True)
        names = "\n".join(deb.name for deb in debs)
    binaries = Binaries(home)
    for binary in (binaries.prometheus, binaries.promtool, binaries.alertmanager):
        if not binary.exists():
            raise install.InstallError(f"the Debian packages unpacked, but {binary} is missing")
    _relocate_templates(binaries.alertmanager)
    marker.write_text(f"{stamp}\n{names}\n")
    return binaries


TEMPLATES_DIR = b"/usr/share/prometheus/alertmanager"
"""Where Debian's Alertmanager looks for `default.tmpl` (its UI's path is a flag)."""


def _relocate_templates(binary: Path) -> None:
    """Rewrite Alertmanager's template directory (the string alone, not the UI paths that
    begin with it) as `./././…` of the same length, which Go's `filepath.Join` cleans to the
    working directory. Fails if the binary does not hold it exactly once."""
    data = binary.read_bytes()
    at = [m.start() for m in re.finditer(re.escape(TEMPLATES_DIR) + rb"(?!/)", data)]
    if len(at) != 1:
        raise install.InstallError(
            f"{binary} does not name its template directory once ({len(at)} times): install "
            f"Alertmanager with `{INSTALL_HINT}`"
        )
    relative = b"./" * (len(TEMPLATES_DIR) // 2) + b"/" * (len(TEMPLATES_DIR) % 2)
    patched = data[: at[0]] + relative + data[at[0] + len(TEMPLATES_DIR) :]
    binary.write_bytes(patched)


# ------------------------------------------------------------------------------- configuration


def targets(metrics: Mapping[str, str]) -> list[dict[str, object]]:
    """The file-discovery targets of every process (`<service>-<role>` → its metrics URL),
    labelled with `process` like compose's and Kubernetes'."""
    out: list[dict[str, object]] = []
    for process, url in sorted(metrics.items()):
        address, _, path = url.removeprefix("http://").partition("/")
        entry: dict[str, object] = {"targets": [address], "labels": {"process": process}}
        if f"/{path}" != "/metrics":
            entry["labels"] = {"process": process, "__metrics_path__": f"/{path}"}
        out.append(entry)
    return out


def prometheus_config(alertmanager: str, *, interval: str = SCRAPE_INTERVAL) -> dict[str, object]:
    """deploy/prometheus/prometheus.yml for the local platform: its intervals, the local
    Alertmanager (`host:port`), the same rules and targets files, Prometheus scraping itself."""
    config: dict[str, Any] = yaml.safe_load((config_dir() / "prometheus.yml").read_text())
    config["global"] = {**config["global"], "scrape_interval": interval}
    config["global"]["evaluation_interval"] = interval
    config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return config


def alertmanager_config(smtp: str, *, to: str = OPS_EMAIL) -> dict[str, object]:
    """deploy/prometheus/alertmanager.yml with the local mail sink (`host:port`) as smarthost,
    and quicker grouping: a test sees its alert's e-mail within seconds."""
    config: dict[str, Any] = yaml.safe_load((config_dir() / "alertmanager.yml").read_text())
    config["route"] = {**config["route"], "group_wait": "1s", "group_interval": "10s"}
    for receiver in config["receivers"]:
        for email in receiver.get("email_configs", []):
            email["smarthost"] = smtp
            email["to"] = to
    return config


def write_config(
    directory: Path,
    metrics: Mapping[str, str],
    alertmanager: str,
    *,
    interval: str = SCRAPE_INTERVAL,
    rules: Mapping[str, str] | None = None,
) -> Path:
    """Write Prometheus's configuration, targets and rules under `directory`; `rules` replaces
    or adds rule files by name (a test's shorter case deadlines). Returns prometheus.yml."""
    (directory / "targets").mkdir(parents=True, exist_ok=True)
    (directory / "rules").mkdir(exist_ok=True)
    config = directory / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(alertmanager, interval=interval)))
    (directory / "targets" / "devstack.yml").write_text(yaml.safe_dump(targets(metrics)))
    for rule_file in sorted((config_dir() / "rules").glob("*.yml")):
        shutil.copyfile(rule_file, directory / "rules" / rule_file.name)
    for name, text in (rules or {}).items():
        (directory / "rules" / name).write_text(text)
    return config


# ------------------------------------------------------------------------------- processes

SMALL_GO_HEAP: dict[str, str] = {"GOGC": "50"}
"""Both are Go programs sized for one small machine: the collector runs at half the default heap
growth, and harder as the heap nears its soft goal (`GOMEMLIMIT`, not a cap), as MinIO's (see
`parts.start_minio`). Their heaps are a few MiB; what Go keeps above them is what this returns."""


def start_alertmanager(
    binaries: Binaries, directory: Path, port: int, smtp: str
) -> tuple[Running, str]:
    """Alertmanager on loopback, alone (no cluster), its notifications to the mail sink."""
    directory.mkdir(parents=True, exist_ok=True)
    templates = binaries.home / "usr/share/prometheus/alertmanager"
    for template in templates.glob("*.tmpl"):  # default.tmpl and the e-mail's, see the doc
        shutil.copyfile(template, directory / template.name)
    config = directory / "alertmanager.yml"
    config.write_text(yaml.safe_dump(alertmanager_config(smtp)))
    base = f"http://127.0.0.1:{port}"
    log = directory / "alertmanager.log"
    proc = spawn(
        [
            str(binaries.alertmanager),
            f"--config.file={config}",
            f"--storage.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.external-url={base}",
            f"--web.ui-path={templates / 'no-ui'}/",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        log=log,
        env={**SMALL_GO_HEAP, "GOMEMLIMIT": "16MiB"},
        cwd=directory,
    )
    return Running("alertmanager", proc.pid, log), base


def start_prometheus(
    binaries: Binaries,
    directory: Path,
    port: int,
    metrics: Mapping[str, str],
    alertmanager: str,
    *,
    interval: str = SCRAPE_INTERVAL,
    rules: Mapping[str, str] | None = None,
) -> tuple[Running, str]:
    """Prometheus on loopback with the platform's rules, scraping every process in `metrics`;
    `POST /-/reload` applies a changed configuration or rule file (`--web.enable-lifecycle`)."""
    config = write_config(
        directory,
        metrics,
        alertmanager.removeprefix("http://"),
        interval=interval,
        rules=rules,
    )
    base = f"http://127.0.0.1:{port}"
    log = directory / "prometheus.log"
    proc = spawn(
        [
            str(binaries.prometheus),
            f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'data'}",
            "--storage.tsdb.retention.time=7d",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.external-url={base}",
            f"--web.local-assets={binaries.web_assets}",
            f"--web.console.templates={binaries.home / 'etc/prometheus/consoles'}",
            f"--web.console.libraries={binaries.home / 'etc/prometheus/console_libraries'}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ],
        log=log,
        env={**SMALL_GO_HEAP, "GOMEMLIMIT": "48MiB"},
        cwd=directory,
    )
    return Running("prometheus", proc.pid, log), base


def ready(base: str) -> bool:
    """Whether Prometheus or Alertmanager at `base` says it is ready (`/-/ready`)."""
    try:
        with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as response:  # noqa: S310
            return bool(200 <= response.status < 300)
    except OSError:
        return False


def reload(base: str) -> None:
    """Make Prometheus read its configuration and rule files again."""
    request = urllib.request.Request(f"{base}/-/reload", method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        if response.status != 200:
            raise RuntimeError(f"Prometheus refused to reload: {response.status}")
