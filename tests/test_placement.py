"""GPU names every process agrees on: a queue's "cuda:N" is the host's GPU N whatever a process's
CUDA_VISIBLE_DEVICES, and a worker pinned to it (``pin_env``) sees that card as its "cuda:0".

No GPU here: a fake host of four cards stands in for CUDA (device count, properties with UUIDs,
CUDA_VISIBLE_DEVICES read as CUDA reads it) and for nvidia-smi's table.
"""
from __future__ import annotations

import os
import subprocess
from types import SimpleNamespace

import pytest
import torch

from hft_core import placement
from hft_core.placement import DeviceError

HOST = ["11111111-aaaa-4000-8000-000000000000", "22222222-bbbb-4000-8000-000000000000",
        "33333333-cccc-4000-8000-000000000000", "44444444-dddd-4000-8000-000000000000"]  # torch prints no "GPU-"


def cuda_sees() -> list[int]:
    """The host cards a process sees, in its own order, as CUDA reads CUDA_VISIBLE_DEVICES (ints or UUID prefixes)."""
    raw = os.environ.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return list(range(len(HOST)))
    seen = []
    for entry in (e.strip() for e in raw.split(",") if e.strip()):
        if entry.isdigit():
            seen.append(int(entry))
        else:
            seen.append(next(i for i, u in enumerate(HOST) if f"GPU-{u}".startswith(entry)))
    return seen


@pytest.fixture
def gpus(monkeypatch):
    """The fake host; ``nvidia_smi=False`` in a test: drop nvidia-smi's table (``gpus.smi(False)``)."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv(placement.WORKER_DEVICE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(cuda_sees()))

    def properties(i):
        seen = cuda_sees()
        if not 0 <= i < len(seen):
            raise AssertionError(f"Invalid device id {i}")
        return SimpleNamespace(uuid=HOST[seen[i]], name="Fake GPU")

    monkeypatch.setattr(torch.cuda, "get_device_properties", properties)
    table = tuple((i, f"GPU-{u}") for i, u in enumerate(HOST))
    monkeypatch.setattr(placement, "host_gpus", lambda: table)

    def smi(present: bool) -> None:
        monkeypatch.setattr(placement, "host_gpus", (lambda: table) if present else (lambda: ()))

    return SimpleNamespace(smi=smi, visible=lambda v: monkeypatch.setenv("CUDA_VISIBLE_DEVICES", v),
                           serve=lambda d: monkeypatch.setenv(placement.WORKER_DEVICE_ENV, d))


def test_without_cuda_visible_devices_names_are_torch_names(gpus):
    assert placement.visible_devices() == ["cpu", "cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert placement.resolve_device("auto") == placement.resolve_device("cuda") == "cuda:0"
    assert [placement.local_name(f"cuda:{i}") for i in range(4)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert placement.check_device("cuda:2") == torch.device("cuda", 2)


def test_a_process_with_its_own_visible_devices_names_cards_by_their_host_index(gpus):
    gpus.visible("2,3")
    assert placement.visible_devices() == ["cpu", "cuda:2", "cuda:3"]
    assert placement.resolve_device("auto") == "cuda:2"  # its first card, by the host's name
    assert [placement.host_index(i) for i in range(2)] == [2, 3]
    assert placement.local_index(3) == 1 and placement.local_index(0) is None
    assert placement.local_name("cuda:3") == "cuda:1"
    assert placement.check_device("cuda:3") == torch.device("cuda", 1)
    with pytest.raises(DeviceError, match=r"'cuda:0'.*host's GPU N.*CUDA_VISIBLE_DEVICES=2,3"):
        placement.check_device("cuda:0")  # torch would have taken it for host card 2


def test_uuids_in_cuda_visible_devices_are_found_in_the_host_table(gpus):
    gpus.visible("GPU-33333333,GPU-11111111-aaaa")  # prefixes, in an order of its own
    assert placement.visible_devices() == ["cpu", "cuda:2", "cuda:0"]
    assert placement.local_name("cuda:0") == "cuda:1" and placement.local_name("cuda:2") == "cuda:0"
    assert placement.gpu_uuid(0) == f"GPU-{HOST[0]}"


@pytest.mark.parametrize("parent_visible", [None, "0,1,2,3", "3,1", "GPU-44444444,GPU-22222222", "1"])
def test_a_worker_pinned_by_pin_env_sees_the_same_card_as_its_queue_name(gpus, monkeypatch, parent_visible):
    """Both ways: the parent's "cuda:N" -> its pin_env -> the child sees that physical card as its
    cuda:0, names it "cuda:N" again, and trains a "cuda:N" run on its cuda:0."""
    if parent_visible is not None:
        gpus.visible(parent_visible)
    for queue in placement.visible_devices()[1:]:
        host = int(queue.split(":")[1])
        parent_local = placement.local_index(host)
        assert placement.local_name(queue) == f"cuda:{parent_local}"
        assert placement.host_index(parent_local) == host
        env = placement.pin_env(queue)
        assert env == {placement.WORKER_DEVICE_ENV: queue, "CUDA_VISIBLE_DEVICES": f"GPU-{HOST[host]}"}
        with monkeypatch.context() as child:
            child.setenv("CUDA_VISIBLE_DEVICES", env["CUDA_VISIBLE_DEVICES"])
            child.setenv(placement.WORKER_DEVICE_ENV, queue)
            assert placement.visible_devices() == ["cpu", queue]
            assert placement.resolve_device("auto") == queue
            assert placement.check_device(queue) == torch.device("cuda", 0)
            assert torch.cuda.get_device_properties(0).uuid == HOST[host]  # the same physical card


def test_without_uuids_a_worker_is_pinned_by_host_index(gpus, monkeypatch):
    """No UUID from torch nor nvidia-smi: CUDA_VISIBLE_DEVICES gets the host index (CUDA's own meaning
    of an integer), whatever the parent's own CUDA_VISIBLE_DEVICES."""
    gpus.smi(False)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: SimpleNamespace(name="old torch"))
    gpus.visible("3,1")
    assert placement.pin_env("cuda:1") == {placement.WORKER_DEVICE_ENV: "cuda:1", "CUDA_VISIBLE_DEVICES": "1"}
    assert placement.gpu_identity(3) == "3"
    assert placement.device_label("cuda:3") == "cuda:3"


def test_a_pinned_worker_without_nvidia_smi_knows_its_card_from_the_queue_it_serves(gpus):
    gpus.smi(False)
    gpus.visible(f"GPU-{HOST[3]}")
    gpus.serve("cuda:3")
    assert placement.visible_devices() == ["cpu", "cuda:3"]
    assert placement.local_name("cuda:3") == "cuda:0"
    assert placement.device_label("cuda:3") == f"cuda:3 (GPU-{HOST[3]})"  # the UUID recorded with a run


def test_the_cpu_path_is_unchanged(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert placement.visible_devices() == ["cpu"]
    assert placement.resolve_device("auto") == "cpu"
    assert placement.local_name("cpu") == "cpu"
    assert placement.check_device("cpu") == torch.device("cpu")
    assert placement.pin_env("cpu") == {placement.WORKER_DEVICE_ENV: "cpu"}
    assert placement.device_label("cpu") == "cpu"
    with pytest.raises(DeviceError, match="no CUDA GPU is visible"):
        placement.check_device("cuda:0")


def test_host_gpus_reads_nvidia_smi_once_and_survives_its_absence(monkeypatch):
    calls = []

    def run(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout=f"0, GPU-{HOST[0]}\n1, GPU-{HOST[1]}\n", stderr="")

    placement.host_gpus.cache_clear()
    try:
        monkeypatch.setattr(placement.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
        monkeypatch.setattr(placement.subprocess, "run", run)
        assert placement.host_gpus() == ((0, f"GPU-{HOST[0]}"), (1, f"GPU-{HOST[1]}"))
        assert placement.host_gpus() == ((0, f"GPU-{HOST[0]}"), (1, f"GPU-{HOST[1]}"))
        assert len(calls) == 1 and "--query-gpu=index,uuid" in calls[0]
        placement.host_gpus.cache_clear()
        monkeypatch.setattr(placement.shutil, "which", lambda name: None)
        assert placement.host_gpus() == ()
    finally:
        placement.host_gpus.cache_clear()


def test_worker_niceness_defaults_to_zero_and_a_bad_value_says_what_to_set(monkeypatch):
    from hft_core.worker_process import worker_nice

    monkeypatch.delenv("HFT_WORKER_NICE", raising=False)
    assert worker_nice() == 0  # app workers compete for the CPU like `hft train` does
    monkeypatch.setenv("HFT_WORKER_NICE", "7")
    assert worker_nice() == 7
    for bad in ("abc", "-3", "20", "1.5"):
        monkeypatch.setenv("HFT_WORKER_NICE", bad)
        with pytest.raises(SystemExit, match="HFT_WORKER_NICE=.*whole number from 0"):
            worker_nice()
