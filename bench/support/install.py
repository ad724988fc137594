"""Installing what a benchmark needs on first use: apt tools, pip packages, the 2015 stack.

Each installer is bounded in time; the ``ensure_*`` / ``pip_install`` functions
return None when the thing is there, or the reason it is not.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from . import BENCH, NODE_ENV

LEGACY_VENV = BENCH / ".venv-legacy"
LEGACY_PYTHON = LEGACY_VENV / "bin" / "python"
LEGACY_NODE = BENCH / "legacy"
LEGACY_BIN = LEGACY_NODE / "node_modules" / "js-host" / "bin" / "js-host.js"
#: The pool benchmark's npm packages (react@18, react-dom@18, hypernova 2.5, hypernova-react),
#: pinned by bench/pool/package-lock.json.
POOL_NODE = BENCH / "pool"


def which(tool: str) -> str | None:
    """``tool`` on PATH, or in /usr/sbin and /sbin (nginx lives there, off a user's PATH)."""
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")


def ensure_tools(*tools: str) -> None:
    """apt-get install the Debian packages of the same names as the missing ``tools``."""
    missing = [tool for tool in tools if not which(tool)]
    if not missing:
        return
    print(f"installing {' '.join(missing)} with apt-get ...", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run([*sudo, "apt-get", "update", "-qq"], check=True, env=env, timeout=300)
    subprocess.run(
        [*sudo, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
        check=True,
        env=env,
        timeout=600,
        stdout=subprocess.DEVNULL,
    )
    if "nginx" in missing:  # Debian starts the packaged service; the benchmarks run their own
        subprocess.run([*sudo, "service", "nginx", "stop"], check=False, capture_output=True)


def ensure_nginx(allow: bool) -> str | None:
    if which("nginx"):
        return None
    if not allow:
        return "nginx is not installed (--no-install)"
    try:
        ensure_tools("nginx")
    except (subprocess.SubprocessError, OSError) as err:
        return f"apt-get install nginx failed: {err}"
    return None if which("nginx") else "nginx is not installed"


def pip_install(module: str, package: str, allow: bool) -> str | None:
    """Import ``module``, pip-installing ``package`` first if needed."""
    try:
        __import__(module)
        return None
    except ImportError:
        pass
    if not allow:
        return f"{package} is not installed (--no-install)"
    print(f"installing {package} with pip ...", flush=True)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", package],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        return f"pip install {package} failed: {done.stderr.strip()[-200:]}"
    try:
        __import__(module)
    except ImportError as err:
        return f"{package} installed but not importable: {err}"
    return None


def ensure_legacy(allow: bool) -> str | None:
    """The 2015 stack: PyPI js-host==0.2.0 in bench/.venv-legacy (its import name is also
    ``js_host``, hence a venv of its own) and npm js-host@0.12.0 in bench/legacy."""
    try:
        if not _legacy_python_works():
            if not allow:
                return "bench/.venv-legacy is missing (--no-install)"
            print("installing js-host==0.2.0 into bench/.venv-legacy ...", flush=True)
            subprocess.run([sys.executable, "-m", "venv", str(LEGACY_VENV)], check=True, timeout=120)
            pip = [str(LEGACY_PYTHON), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            subprocess.run([*pip, "js-host==0.2.0"], check=True, capture_output=True, timeout=300)
        if not LEGACY_BIN.exists():
            if not allow:
                return "bench/legacy/node_modules is missing (--no-install)"
            print("installing npm js-host@0.12.0 into bench/legacy ...", flush=True)
            LEGACY_NODE.mkdir(exist_ok=True)
            npm = [
                "npm",
                "install",
                "--prefix",
                str(LEGACY_NODE),
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
            ]
            subprocess.run(
                [*npm, "js-host@0.12.0"], check=True, capture_output=True, env=NODE_ENV, timeout=300
            )
    except (subprocess.SubprocessError, OSError) as err:
        return f"cannot install the 2015 stack: {err}"
    return None


def _legacy_python_works() -> bool:
    if not LEGACY_PYTHON.exists():
        return False
    # import js_host.conf only: the 2015 js_host.host connects to a host on import
    check = [str(LEGACY_PYTHON), "-c", "import js_host.conf"]
    return subprocess.run(check, capture_output=True, timeout=60).returncode == 0


def ensure_pool_stack(allow: bool) -> str | None:
    """bench/pool/node_modules, installed from its lock file (``npm ci``). hypernova-react 2.1
    names React <= 16 as its peer; it calls only ``renderToString``, which React 18 keeps,
    hence ``--legacy-peer-deps``."""
    lock = POOL_NODE / "package-lock.json"
    installed = POOL_NODE / "node_modules" / ".package-lock.json"
    if installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return None
    if not allow:
        return "bench/pool/node_modules is missing (--no-install)"
    print("installing react@18, hypernova 2.5 and hypernova-react into bench/pool ...", flush=True)
    npm = ["npm", "ci", "--prefix", str(POOL_NODE), "--no-audit", "--no-fund", "--loglevel=error"]
    try:
        subprocess.run(
            [*npm, "--legacy-peer-deps"], check=True, capture_output=True, env=NODE_ENV, timeout=600
        )
    except (subprocess.SubprocessError, OSError) as err:
        detail = getattr(err, "stderr", b"") or b""
        return f"npm ci in bench/pool failed: {err} {detail.decode(errors='replace')[-300:]}"
    return None
