"""Searches of the attack space, each with the same budget of episodes:
- `ppo`: reinforcement learning (stable-baselines3's PPO on `env.PoisonEnv`), the learning
  attacker the issue asks for;
- `random`: points drawn uniformly, the baseline;
- `cma`: CMA-ES (the `cma` package), the evolutionary baseline.
Every search takes a seed and replays the same episodes for it."""

from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np

from ...data.datasets import Dataset
from ...data.text import TextDataset
from ...plugins import Registry
from .env import BudgetSpent, PoisonEnv
from .episode import DEFAULT, Budget, Clean, Episode

SEARCHES: Registry[Callable[[PoisonEnv, int, int], None]] = Registry("search")


def run_search(name: str, train: Dataset | TextDataset, test: Dataset | TextDataset,
               against: str, episodes: int,
               seed: int = 0, target: int = 0, budget: Budget = DEFAULT,
               clean: Clean | None = None) -> list[Episode]:
    """`episodes` episodes of search `name` against `against`; the episodes in order.
    `clean`: the clean model episodes are compared with (None: trained here)."""
    if name not in SEARCHES:
        raise ValueError(f"unknown search {name!r}: one of {SEARCHES.choices()}")
    if episodes < 1:
        raise ValueError(f"the budget must be at least one episode, not {episodes}")
    env = PoisonEnv(train, test, against, target, seed, budget, limit=episodes,
                    clean=clean)
    try:
        SEARCHES[name](env, episodes, seed)
    except BudgetSpent:
        pass
    return env.episodes


def _random(env: PoisonEnv, episodes: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    while True:  # until BudgetSpent
        env.step(rng.uniform(-1, 1, env.action_space.shape[0]))


def _cma(env: PoisonEnv, episodes: int, seed: int) -> None:
    import cma

    strategy = cma.CMAEvolutionStrategy(
        np.zeros(env.action_space.shape[0]), 0.5,
        {"bounds": [-1, 1], "seed": seed + 1, "popsize": max(4, min(8, episodes // 3)),
         "verbose": -9})
    env.reset(seed=seed)
    while True:  # until BudgetSpent
        points = strategy.ask()
        strategy.tell(points, [-env.step(np.asarray(p))[1] for p in points])


SQUASH_BOUND = 5.0  # tanh(5) = 0.9999


class Squashed(gym.ActionWrapper):
    """PPO's Gaussian samples carried into the attack space by tanh, not clipped. Clipped, a
    policy whose mean has passed a bound draws the same attack every time, and equal rewards
    give it no gradient to leave by (round eight: 9 of 10 episodes in the degenerate corner,
    at the bounds of three axes). The policy's own box is wide (SQUASH_BOUND), where tanh is
    flat."""

    def __init__(self, env: PoisonEnv):
        super().__init__(env)
        self.action_space = gym.spaces.Box(-SQUASH_BOUND, SQUASH_BOUND,
                                           env.action_space.shape, dtype=np.float32)

    def action(self, action):
        return np.tanh(np.asarray(action, dtype=np.float64))



def _ppo(env: PoisonEnv, episodes: int, seed: int) -> None:
    from stable_baselines3 import PPO

    steps = max(4, min(16, episodes // 4))  # a policy update after every `steps` episodes
    agent = PPO("MlpPolicy", Squashed(env), n_steps=steps, batch_size=steps, n_epochs=10,
                learning_rate=3e-3, gamma=0.0, gae_lambda=1.0, ent_coef=0.0, seed=seed,
                policy_kwargs={"net_arch": [32]}, device="cpu", verbose=0)
    agent.learn(total_timesteps=episodes)  # stopped by BudgetSpent mid-rollout


SEARCHES.add("ppo", _ppo, summary="reinforcement learning: PPO (stable-baselines3)")
SEARCHES.add("random", _random, summary="points drawn uniformly at random")
SEARCHES.add("cma", _cma, summary="CMA-ES, the evolution strategy")
