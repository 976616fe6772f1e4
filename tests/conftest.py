"""The test tiers, and fixtures: a run directory, the built-in dSprites and a real SLURM (helpers.py
has the rest).

`python -m pytest` runs the default tier: in-process tests, about a minute on 2 cores. The other
tiers are marked by what they need (pyproject.toml lists the markers); `--all` runs every tier (what
CI runs), `-m` picks tiers, and tests named on the command line run whatever their tier."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import HUNG, free_port

# Markers of the tiers that `python -m pytest` leaves out unless asked (--all, -m, or a named test).
OTHER_TIERS = ("integration", "distributed", "deepspeed", "slurm", "slow")


def pytest_addoption(parser):
    parser.addoption("--all", action="store_true",
                     help=f"run every tier ({', '.join(OTHER_TIERS)} too), as CI does")


def default_tier_only(config) -> bool:
    return (not config.getoption("--all") and not config.getoption("markexpr")
            and config.args_source == pytest.Config.ArgsSource.TESTPATHS)


def pytest_report_header(config):
    if default_tier_only(config):
        return f"default tier: in-process tests only; --all adds the {', '.join(OTHER_TIERS)} tiers (CI runs --all)"


def pytest_collection_modifyitems(config, items):
    if not default_tier_only(config):
        return
    keep, other = [], []
    for item in items:
        (other if any(item.get_closest_marker(m) for m in OTHER_TIERS) else keep).append(item)
    if other:
        config.hook.pytest_deselected(items=other)
        items[:] = keep


@pytest.fixture
def tmp_run(tmp_path: Path) -> Path:
    return tmp_path / "run"


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> Path:
    """One small trained run shared by the session (4 steps, checkpoints at 2 and 4, its export):
    read it, or copy it where a test changes it."""
    from helpers import train_here
    run_dir = tmp_path_factory.mktemp("small") / "run"
    train_here(run_dir, "train.steps=4", "train.ckpt_every=2", "train.keep_checkpoints=3")
    return run_dir


@pytest.fixture(scope="session")
def dsprites():
    from betavae_dist.data.dsprites import DSprites
    return DSprites()


SLURM_CONF = """\
ClusterName=betavae-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctl_port}
AuthType=auth/none
CredType=cred/none
SlurmUser=root
SlurmdUser=root
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool-%n
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd-%n.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
MinJobAge=5
ReturnToService=2
NodeName=node[1-2] NodeHostname={host} NodeAddr=127.0.0.1 Port=[{node_port}-{node_port_end}] CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=node[1-2] Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
"""



@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A real SLURM with 2 emulated nodes on this machine (Debian's slurmctld/slurmd, no systemd);
    yields the environment for sbatch & co. Missing SLURM skips, or fails under
    BETAVAE_REQUIRE_SLURM=1 (set by .ci/run, which installs it); BETAVAE_SKIP_SLURM=1 skips it
    locally (or `pytest -m "not slurm"`)."""
    import shutil
    import time
    binaries = ("slurmctld", "slurmd", "sbatch", "scontrol", "sinfo")
    required = os.environ.get("BETAVAE_REQUIRE_SLURM") == "1"
    if os.environ.get("BETAVAE_SKIP_SLURM") == "1" and not required:  # leave this machine's daemons alone
        pytest.skip("BETAVAE_SKIP_SLURM=1")
    if not all(shutil.which(b) for b in binaries) or os.geteuid() != 0:
        message = "needs root and SLURM (Debian packages slurmctld slurmd slurm-client)"
        if required:
            pytest.fail(f"BETAVAE_REQUIRE_SLURM=1 but this {message}")
        pytest.skip(message)
    d = tmp_path_factory.mktemp("slurm")
    (d / "state").mkdir()
    node_port = free_port()
    conf = d / "slurm.conf"
    conf.write_text(SLURM_CONF.format(host=socket.gethostname().split(".")[0], ctl_port=free_port(), d=d,
                                      node_port=node_port, node_port_end=node_port + 1))
    env = {**os.environ, "SLURM_CONF": str(conf), "PYTHON_ENV": sys.prefix, "DS_ACCELERATOR": "cpu",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    subprocess.run(["slurmctld", "-f", str(conf), "-i"], env=env, check=True)
    for node in ("node1", "node2"):
        subprocess.run(["slurmd", "-f", str(conf), "-N", node], env=env, check=True)
    try:
        deadline = time.time() + HUNG
        while time.time() < deadline:
            states = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True).stdout.split()
            if states and all(s == "idle" for s in states):
                break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"SLURM nodes never became idle: {states}\n" + (d / "slurmctld.log").read_text()[-2000:])
        yield env
    finally:
        for pid_file in d.glob("*.pid"):
            try:
                os.kill(int(pid_file.read_text()), 15)
            except (ValueError, ProcessLookupError):
                pass
