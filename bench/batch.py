"""Batch throughput on the shipped tiny-shapes model: images/s for

    diffblocks batch, 1 process, --batch-size 1
    diffblocks batch, 1 process, --batch-size 4
    diffblocks batch, 2 processes (accelerate launch, gloo on CPU), --batch-size 1
    diffusers StableDiffusionPipeline in a plain Python loop, one prompt a call (same weights)

Each row runs in a fresh process (wall time of the whole command, model loading included,
so the figure is what a user waits for); rows alternate and the median of --repeats is shown.
Compare ratios from one run: the machine's load varies.

    python bench/batch.py                 # 24 prompts, 20 steps, 3 repeats
    python bench/batch.py --rows 12 --steps 10 --repeats 1
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "diffblocks" / "assets" / "tiny-shapes"

_DIFFUSERS_LOOP = """
import sys, time, torch
from diffusers import StableDiffusionPipeline
torch.set_num_threads(int(sys.argv[4]))
pipe = StableDiffusionPipeline.from_pretrained(sys.argv[1], torch_dtype=torch.float32, safety_checker=None)
pipe.set_progress_bar_config(disable=True)
prompts = open(sys.argv[2]).read().split("\\n")
for i, prompt in enumerate(p for p in prompts if p):
    pipe(prompt, num_inference_steps=int(sys.argv[3]), generator=torch.Generator().manual_seed(i)).images[0].save(f"{sys.argv[5]}/{i}.png")
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _commands(prompts: Path, out: Path, steps: int, threads: int) -> dict[str, list[str]]:
    batch = [sys.executable, "-m", "diffblocks.cli", "batch", str(prompts), "--out", str(out), "--steps", str(steps), "--quiet"]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_ip", "127.0.0.1"]
    return {
        "diffblocks batch, 1 process, batch 1": batch,
        "diffblocks batch, 1 process, batch 4": [*batch, "--batch-size", "4"],
        "diffblocks batch, 2 processes, batch 1": [*launch, "--main_process_port", "PORT", "-m", "diffblocks.cli", *batch[3:]],
        "diffusers pipeline, Python loop": [sys.executable, "-c", _DIFFUSERS_LOOP, str(MODEL), str(prompts), str(steps), str(threads), str(out)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=24)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per process")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    prompts = work / "prompts.txt"
    shapes = ("circle", "square", "triangle")
    colours = ("red", "green", "blue", "yellow")
    places = ("left", "right", "top", "bottom")
    prompts.write_text("\n".join(f"a {colours[i % 4]} {shapes[i % 3]} on the {places[(i // 3) % 4]}" for i in range(args.rows)) + "\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
    times: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for name, command in _commands(prompts, work / "out", args.steps, args.threads).items():
            shutil.rmtree(work / "out", ignore_errors=True)
            (work / "out").mkdir()
            command = [str(_port()) if part == "PORT" else part for part in command]
            start = time.perf_counter()
            subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times.setdefault(name, []).append(time.perf_counter() - start)
    print(f"\n{args.rows} images, {args.steps} steps, {args.threads} thread(s) per process, median of {args.repeats}, "
          f"wall time incl. start-up and loading\n")
    print(f"| {'run':<40} | {'seconds':>8} | {'images/s':>8} |")
    print(f"|{'-' * 42}|{'-' * 10}:|{'-' * 10}:|")
    for name, values in times.items():
        seconds = statistics.median(values)
        print(f"| {name:<40} | {seconds:8.1f} | {args.rows / seconds:8.2f} |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
