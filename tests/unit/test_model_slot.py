"""ModelSlot (engines/coqui_common.py): a model swap loads beside the requests. A real XTTS takes
about 18 s to load on a GPU; requests on the old model must go on at their own pace meanwhile, and
checking a model must not put a second copy on the replica's GPU share."""

import threading

import pytest
import torch

from engines.coqui_common import ModelFolders, ModelSlot

GPU = torch.device("cuda")  # never touched: the fake model only records where it is moved


class FakeModel:
    def __init__(self, name: str, device: torch.device):
        self.name, self.loaded_on, self.moves = name, device.type, []


class GatedLoader:
    """Loads a FakeModel; once `hold()` is called, the next load waits until `release()` (up to 5 s,
    as long as a slow model takes) and says when it has started."""

    def __init__(self):
        self.started, self.gate = threading.Event(), threading.Event()
        self.gate.set()
        self.devices = []

    def hold(self):
        self.gate.clear()

    def release(self):
        self.gate.set()

    def __call__(self, name, folder, device):
        self.devices.append(device.type)
        self.started.set()
        self.gate.wait(5)
        return FakeModel(name, device)


@pytest.fixture
def slot(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
    loader = GatedLoader()
    slot = ModelSlot(ModelFolders(tmp_path, "x", ("config.json",)), loader, "X",
                     move=lambda model, device: model.moves.append(device.type), device=GPU)
    slot.select("x - a")
    return slot, loader


def test_requests_on_the_old_model_go_on_while_the_new_one_loads(slot):
    slot, loader = slot
    loader.hold()
    swap = threading.Thread(target=slot.select, args=("x - b",))
    swap.start()
    assert loader.started.wait(5)
    served = []
    for _ in range(20):  # each request (as the XTTS batcher's rows do) enters and leaves the model
        done = threading.Event()

        def request(done=done):
            with slot.use() as model:
                served.append(model.name)
            done.set()

        threading.Thread(target=request, daemon=True).start()
        assert done.wait(2), "a request waited for the model being loaded"
    assert not loader.gate.is_set() and swap.is_alive(), "all 20 were served while the load still ran"
    assert served == ["x - a"] * 20
    loader.release()
    swap.join(5)
    with slot.use() as model:
        assert model.name == "x - b"


def test_a_request_that_started_on_the_old_model_keeps_it_through_the_swap(slot):
    slot, _ = slot
    with slot.use() as old:
        slot.select("x - b")
        assert old.name == "x - a" and slot.current().name == "x - b"


def test_lowvram_counts_users_per_model_across_a_swap(slot):
    slot, _ = slot
    slot.set_lowvram(True)
    old = slot.current()
    assert old.moves == ["cpu"]
    first = slot.use()
    assert first.__enter__() is old and old.moves == ["cpu", "cuda"]
    slot.select("x - b")  # loads straight into RAM: LowVRAM keeps it there until a request uses it
    new = slot.current()
    assert new.loaded_on == "cpu" and new.moves == []
    with slot.use() as used:
        assert used is new and new.moves == ["cuda"], "the new model's first user moves it, whatever the old one's"
        first.__exit__(None, None, None)
        assert old.moves == ["cpu", "cuda", "cpu"], "the old model's last user sends it back to RAM"
        assert new.moves == ["cuda"], "while the new model stays with its own user"
    assert new.moves == ["cuda", "cpu"]


def test_checking_a_model_loads_it_in_ram_and_changes_nothing(slot):
    slot, loader = slot
    slot.check("x - b")
    assert loader.devices == ["cuda", "cpu"], "the check's copy took no share of the GPU"
    assert slot.current().name == "x - a"
