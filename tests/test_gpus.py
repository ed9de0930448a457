"""Worker-to-GPU assignment (the GPU itself is not needed to check the plan)."""

from tunelab.gpus import visible_gpus, worker_env


def test_visible_gpus_follow_cuda_visible_devices():
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2, 3"}) == ["2", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []


def test_one_gpu_per_worker_slot_with_memory_growth():
    envs = [worker_env({"PATH": "/bin"}, slot, ["0", "1"]) for slot in range(4)]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0", "1", "0", "1"]
    assert all(e["TF_FORCE_GPU_ALLOW_GROWTH"] == "true" and e["PATH"] == "/bin" for e in envs)
    assert "CUDA_VISIBLE_DEVICES" not in worker_env({"PATH": "/bin"}, 0, [])
