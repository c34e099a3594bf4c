"""Run a test worker script under `torchrun --nproc_per_node 2` on gloo (the DDP tests of the trainer and the SAE)."""
import os
import socket
import subprocess
import sys
from pathlib import Path


def two_ranks(worker: str, out: Path) -> None:
    """Run tests/unit/<worker> as two local ranks writing into `out`; fails the test with the ranks' output."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    here = Path(__file__).parent
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(here.parents[1])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(port), str(here / worker), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
