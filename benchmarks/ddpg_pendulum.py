"""DDPG (gapray.rl on RLlib's new API stack) on Pendulum-v1: return vs env steps, wall time.

How to run this script
----------------------
    python benchmarks/ddpg_pendulum.py                     # 30k env steps, seed 0, local sampling
    python benchmarks/ddpg_pendulum.py --total-steps 5000 --tag smoke

Results to expect
-----------------
CleanRL's DDPG reaches about -200 on Pendulum-v1 within 20-30k steps; the target here is a
mean return above -250 within 30k env steps (mean of the last 10 training episodes, and a
deterministic evaluation over 10 episodes). A random policy scores about -1200. Writes
``benchmarks/results/ddpg_pendulum[_TAG].json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"


def plain_torch_update_ms(config, batch_size: int, repeats: int = 200) -> float:
    """The same DDPG maths (forward, both losses, two backward passes, Adam, Polyak) outside RLlib."""
    import gymnasium as gym
    from ray.rllib.core.columns import Columns
    from ray.rllib.utils.torch_utils import update_target_network

    from gapray.rl.learner import actor_loss, critic_loss
    from gapray.rl.rl_module import Q_CURR, QF_PREDS, QF_TARGET_NEXT, DDPGTorchRLModule
    from gapray.rl.rowwise import shared_td_target

    env = gym.make("Pendulum-v1")
    module = DDPGTorchRLModule(observation_space=env.observation_space, action_space=env.action_space,
                               model_config=config.model_config)
    module.make_target_networks()
    opt_q, opt_pi = torch.optim.Adam(module.qf.parameters(), 3e-4), torch.optim.Adam(module.pi.parameters(), 3e-4)
    batch = {Columns.OBS: torch.randn(batch_size, 3), Columns.NEXT_OBS: torch.randn(batch_size, 3),
             Columns.ACTIONS: torch.rand(batch_size, 1) * 2 - 1, Columns.REWARDS: torch.randn(batch_size),
             Columns.TERMINATEDS: torch.zeros(batch_size)}
    start = time.perf_counter()
    for _ in range(repeats):
        out = module.forward_train(batch)
        target = shared_td_target(batch[Columns.REWARDS], batch[Columns.TERMINATEDS], out[QF_TARGET_NEXT], 0.99)
        lq, lpi = critic_loss(out[QF_PREDS], target), actor_loss(out[Q_CURR])
        opt_q.zero_grad()
        lq.backward(retain_graph=True)
        opt_pi.zero_grad()
        lpi.backward()
        opt_q.step()
        opt_pi.step()
        for main, target_net in module.get_target_network_pairs():
            update_target_network(main, target_net, 5e-3)
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--total-steps", type=int, default=30_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-env-runners", type=int, default=0)
    parser.add_argument("--rollout-fragment-length", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--gradient-steps", type=int, default=1,
                        help="gradient steps per learner update (4 with the default fragment: one per env step)")
    parser.add_argument("--learning-starts", type=int, default=1000)
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="intra-op threads of the driver (the local learner); 1 is fastest on a busy 2-core box")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()

    torch.set_num_threads(args.torch_threads)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    from gapray.rl.evaluation import evaluate_policy, random_policy_returns
    from gapray.rl.presets import pendulum_config

    config = pendulum_config(num_env_runners=args.num_env_runners, rollout_fragment_length=args.rollout_fragment_length,
                             batch_size=args.batch_size, learning_starts=args.learning_starts, seed=args.seed)
    config = config.training(gradient_steps_per_update=args.gradient_steps)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    algo = config.build_algo()
    curve, start = [], time.perf_counter()
    steps = 0
    while steps < args.total_steps:
        result = algo.train()
        runners = result["env_runners"]
        steps = int(runners.get("num_env_steps_sampled_lifetime", 0))
        learner = result.get("learners", {}).get("default_policy", {})
        point = {
            "env_steps": steps,
            "wall_s": round(time.perf_counter() - start, 1),
            "episode_return_mean_last10": runners.get("episode_return_mean"),
            "qf_loss": learner.get("qf_loss"),
            "policy_loss": learner.get("policy_loss"),
            "learner_update_s": result.get("timers", {}).get("learner_update_timer"),
            "training_step_s": result.get("timers", {}).get("training_step"),
        }
        curve.append(point)
        print(json.dumps(point), flush=True)
    wall = time.perf_counter() - start
    module = algo.get_module()
    eval_returns = evaluate_policy(module, "Pendulum-v1", episodes=10, seed=1000 + args.seed)
    random_returns = random_policy_returns("Pendulum-v1", episodes=10, seed=1000 + args.seed)
    algo.stop()
    ray.shutdown()
    plain_ms = plain_torch_update_ms(config, args.batch_size)

    reached = next((p["env_steps"] for p in curve
                    if p["episode_return_mean_last10"] is not None and p["episode_return_mean_last10"] > -250), None)
    rllib_update_ms = np.mean([p["learner_update_s"] for p in curve[-5:] if p["learner_update_s"]]) * 1e3
    summary = {
        "benchmark": "ddpg_pendulum",
        "settings": vars(args),
        "final_episode_return_mean_last10": curve[-1]["episode_return_mean_last10"],
        "eval_deterministic_mean": float(np.mean(eval_returns)),
        "eval_deterministic_std": float(np.std(eval_returns)),
        "random_policy_mean": float(np.mean(random_returns)),
        "first_env_steps_above_minus_250": reached,
        "wall_s": round(wall, 1),
        "rllib_learner_update_ms": round(float(rllib_update_ms), 2),
        "plain_torch_update_ms": round(plain_ms, 2),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus (shared), torch threads {args.torch_threads}",
        "curve": curve,
    }
    stem = "ddpg_pendulum" + (f"_{args.tag}" if args.tag else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(summary, indent=2))
    lines = [
        f"# DDPG on Pendulum-v1 ({stem})", "",
        f"Command: `python benchmarks/ddpg_pendulum.py --total-steps {args.total_steps} --seed {args.seed} "
        f"--rollout-fragment-length {args.rollout_fragment_length} --batch-size {args.batch_size} "
        f"--gradient-steps {args.gradient_steps}"
        f"{' --tag ' + args.tag if args.tag else ''}`", "",
        "| metric | value |", "|---|---|",
        f"| env steps | {steps} |",
        f"| mean return, last 10 training episodes | {summary['final_episode_return_mean_last10']:.1f} |",
        f"| deterministic eval, 10 episodes | {summary['eval_deterministic_mean']:.1f} +- "
        f"{summary['eval_deterministic_std']:.1f} |",
        f"| random policy, 10 episodes | {summary['random_policy_mean']:.1f} |",
        f"| first env steps with last-10 mean > -250 | {reached} |",
        f"| wall time | {wall:.0f} s |",
        f"| RLlib learner update (batch {args.batch_size}) | {summary['rllib_learner_update_ms']} ms |",
        f"| same update in plain torch | {summary['plain_torch_update_ms']} ms |", "",
        "| env steps | wall s | mean return (last 10 episodes) |", "|---|---|---|",
    ]
    for p in curve[:: max(1, len(curve) // 30)] + ([curve[-1]] if len(curve) > 1 else []):
        ret = p["episode_return_mean_last10"]
        lines.append(f"| {p['env_steps']} | {p['wall_s']} | {'' if ret is None else f'{ret:.1f}'} |")
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "curve"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
