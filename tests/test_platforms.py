"""Portability: Windows has no `fcntl`, and each platform keeps data and config in its own folders.

CI runs on Linux only. A child interpreter with `fcntl` made unimportable (as on Windows) imports every
module of the three packages and runs the read-only commands, once as it is and once with `sys.platform`
reading `win32` (so the default database is looked for in `%LOCALAPPDATA%`). The folders of each platform
are checked here in-process, with `sys.platform` patched.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.config import paths
from tests.conftest import BTC_ROWS, ETH_ROWS, ROOT, ccxt_tiers, write_archive

#: Runs in the child: blocks `fcntl`, imports everything, runs the commands given as JSON in argv[1].
CHILD = r"""
import importlib, io, json, pkgutil, sys
from contextlib import redirect_stderr, redirect_stdout


class NoFcntl:
    # Windows' answer to `import fcntl`; a module of ours that needs it fails here as it would there.
    def find_spec(self, name, path=None, target=None):
        if name == "fcntl" or name.startswith("fcntl."):
            raise ModuleNotFoundError("No module named 'fcntl'", name=name)
        return None


sys.modules.pop("fcntl", None)
sys.meta_path.insert(0, NoFcntl())

SKIP = {"monitor.__main__", "monitor.store.migrations.env"}  # runs the CLI / needs Alembic's run context
failed = []
for top in ("snapshots", "alerts", "monitor"):
    package = importlib.import_module(top)
    for info in pkgutil.walk_packages(package.__path__, top + "."):
        if info.name in SKIP:
            continue
        try:
            importlib.import_module(info.name)
        except Exception as exc:
            failed.append(f"{info.name}: {type(exc).__name__}: {exc}")

from monitor.cli import run

commands, windows_dirs = json.loads(sys.argv[1])
results = []
for platform in ("as is", "win32"):
    if platform == "win32":
        import platformdirs.windows

        sys.platform = "win32"
        platformdirs.windows.get_win_folder = lambda csidl: windows_dirs[csidl]
    for argv in commands:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = run(argv)
        results.append({"platform": platform, "argv": argv, "code": code, "out": out.getvalue(), "err": err.getvalue()})
print(json.dumps({"failed": failed, "fcntl": "fcntl" in sys.modules, "results": results}))
"""


@pytest.fixture
def history(tmp_path: Path) -> str:
    """A SQLite database with two versions of BTC and ETH, written by the real CLI (with `fcntl`)."""
    url = f"sqlite:///{tmp_path / 'tiers.db'}"
    tighter = [(f, r * 1.5, lev) for f, r, lev in ETH_ROWS]
    files = []
    for name, eth in (("2024-02-01_a.json", ETH_ROWS), ("2024-03-01_b.json", tighter)):
        payload = {
            "BTC/USDT:USDT": ccxt_tiers("BTC/USDT:USDT", BTC_ROWS),
            "ETH/USDT:USDT": ccxt_tiers("ETH/USDT:USDT", eth),
        }
        files.append(str(write_archive(tmp_path / name, payload)))
    for args in (
        ["import", *files, "--source", "binance-usdm"],
        ["positions", "add", "-s", "binance-usdm", "--symbol", "BTCUSDT", "--side", "long", "--entry", "60000",
         "--qty", "1", "--margin", "6000"],
    ):  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "monitor", "--db", url, *args], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
    return url


def read_only_commands(url: str) -> list[list[str]]:
    db = ["--db", url]
    return [
        [*db, "tiers", "BTCUSDT", "-s", "binance-usdm"],
        [*db, "tiers", "ETHUSDT", "-s", "binance-usdm", "--json"],
        [*db, "changes"],
        [*db, "changes", "--json"],
        [*db, "history", "ETHUSDT", "-s", "binance-usdm"],
        [*db, "sources", "--json"],
        [*db, "polls"],
        [*db, "positions", "list", "--json"],
        [*db, "impacts"],
        [*db, "alerts", "list"],
        [*db, "market", "show"],
        [*db, "liq", "-s", "binance-usdm", "--symbol", "BTCUSDT", "--side", "long", "--entry", "60000",
         "--qty", "1", "--margin", "6000", "--json"],
        ["--help"],
    ]  # fmt: skip


def test_every_module_imports_and_the_read_only_commands_run_without_fcntl(history: str, tmp_path: Path) -> None:
    windows = {"CSIDL_LOCAL_APPDATA": str(tmp_path / "Local"), "CSIDL_APPDATA": str(tmp_path / "Roaming")}
    commands = read_only_commands(history)
    no_db = ["sources"]  # no --db: the default database, in the platform's data folder
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps([[*commands, no_db], windows])],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["failed"] == []
    assert report["fcntl"] is False
    runs = {(r["platform"], tuple(r["argv"])): r for r in report["results"]}
    for platform in ("as is", "win32"):
        for argv in commands:
            r = runs[(platform, tuple(argv))]
            assert (r["code"], r["err"]) == (0, ""), (platform, argv, r)
        assert runs[(platform, ("--db", history, "tiers", "ETHUSDT", "-s", "binance-usdm", "--json"))][
            "out"
        ].startswith("[")
        assert "BTC/USDT:USDT" in runs[(platform, ("--db", history, "tiers", "BTCUSDT", "-s", "binance-usdm"))]["out"]
    # Nothing is created by a read; the message names the database where each platform keeps it.
    linux_db = tmp_path / "home" / ".local" / "share" / "tierdrift" / "tierdrift.db"
    windows_db = tmp_path / "Local" / "tierdrift" / "tierdrift.db"
    assert runs[("as is", tuple(no_db))]["code"] == 1
    assert str(linux_db) in runs[("as is", tuple(no_db))]["err"]
    assert runs[("win32", tuple(no_db))]["code"] == 1
    assert str(windows_db) in runs[("win32", tuple(no_db))]["err"]
    assert not linux_db.exists() and not windows_db.exists()


# -- folders --------------------------------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "TIERDRIFT_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_linux_keeps_the_documented_xdg_folders(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    assert paths.default_data_dir() == home / ".local/share/tierdrift"
    assert paths.default_config_file() == home / ".config/tierdrift/config.toml"
    assert paths.default_database_url() == f"sqlite:///{home}/.local/share/tierdrift/tierdrift.db"
    monkeypatch.setenv("XDG_DATA_HOME", "/srv/data")
    monkeypatch.setenv("XDG_CONFIG_HOME", "/etc/xdg")
    assert paths.default_data_dir() == Path("/srv/data/tierdrift")
    assert paths.default_config_file() == Path("/etc/xdg/tierdrift/config.toml")


def test_macos_keeps_both_in_application_support(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    support = home / "Library" / "Application Support" / "tierdrift"
    assert paths.default_data_dir() == support
    assert paths.default_config_file() == support / "config.toml"


def test_windows_keeps_data_local_and_settings_roaming(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import platformdirs.windows

    folders = {"CSIDL_LOCAL_APPDATA": str(home / "Local"), "CSIDL_APPDATA": str(home / "Roaming")}
    monkeypatch.setattr(platformdirs.windows, "get_win_folder", folders.__getitem__)
    monkeypatch.setattr(sys, "platform", "win32")
    assert paths.default_data_dir() == home / "Local" / "tierdrift"
    assert paths.default_config_file() == home / "Roaming" / "tierdrift" / "config.toml"


@pytest.mark.parametrize("platform", ["linux", "darwin", "win32"])
def test_tierdrift_config_wins_everywhere(
    home: Path, monkeypatch: pytest.MonkeyPatch, platform: str, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setenv("TIERDRIFT_CONFIG", str(tmp_path / "mine.toml"))
    assert paths.default_config_file() == tmp_path / "mine.toml"
