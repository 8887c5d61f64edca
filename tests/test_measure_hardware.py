"""Hardware identity and the key that matches comparable timings."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from segbench.errors import UserError
from segbench.measure import hardware_identity, hardware_key

REPO = Path(__file__).resolve().parents[1]


def test_cpu_identity_has_the_fields_that_explain_a_timing() -> None:
    identity = hardware_identity("cpu")
    assert isinstance(identity["cpu_model"], str) and identity["cpu_model"]
    assert isinstance(identity["cpu_cores"], int) and identity["cpu_cores"] >= 1
    assert 1 <= identity["cpu_cores_usable"] <= identity["cpu_cores"]
    assert identity["torch_threads"] == torch.get_num_threads()
    assert identity["torch"] == torch.__version__
    assert identity["cuda"] == torch.version.cuda
    assert identity["python"] and identity["platform"] and identity["torchvision"]
    # A CPU timing does not depend on a GPU that happens to be in the machine.
    assert identity["gpu_name"] is None and identity["driver"] is None
    assert json.loads(json.dumps(identity)) == identity


def test_key_is_short_stable_and_follows_only_what_changes_timings() -> None:
    identity = hardware_identity("cpu", threads=4)
    key = hardware_key(identity)
    assert re.fullmatch(r"[0-9a-f]{12}", key)
    assert hardware_key(hardware_identity("cpu", threads=4)) == key
    assert identity["torch_threads"] == 4
    assert hardware_key({**identity, "torch_threads": 1}) != key
    assert hardware_key({**identity, "gpu_name": "NVIDIA H100"}) != key
    assert hardware_key({**identity, "driver": "550.54"}) != key
    assert hardware_key({**identity, "torch": "3.0.0"}) != key
    # Provenance that does not change a timing does not split the history.
    assert hardware_key({**identity, "platform": "elsewhere", "python": "3.99"}) == key


def test_cuda_identity_without_cuda_is_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="CUDA is not available"):
        hardware_identity("cuda:0")


def test_importing_measure_and_hashing_stays_torch_free() -> None:
    code = (
        "import sys, segbench.measure as m; "
        "m.hardware_key({'cpu_model': 'x'}); "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
