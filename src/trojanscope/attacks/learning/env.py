"""The learning attacker's environment (gymnasium): one step is one episode of
poison -> train -> detect -> reward (`episode.run_episode`).

The action is a point of the attack space (`space.decode` for images, `text_space` for
texts). The observation is the last episode's outcome (attack success, detection, reward),
so a policy may condition on how its last attempt fared; with single-step episodes the
problem is a continuous bandit, which PPO learns as a Gaussian policy over the space.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from ...data.datasets import Dataset
from ...data.text import TextDataset
from . import text_space
from .episode import DEFAULT, Budget, Clean, Episode, clean_model, run_episode
from .space import DIMENSIONS, decode


class BudgetSpent(Exception):
    """Raised by a step past the environment's limit of episodes (a search that asks for more
    than its budget, such as PPO finishing a rollout, stops there)."""


class PoisonEnv(gym.Env):
    metadata: dict = {"render_modes": []}

    def __init__(self, train: Dataset | TextDataset, test: Dataset | TextDataset, against: str,
                 target: int = 0,
                 seed: int = 0, budget: Budget = DEFAULT, limit: int | None = None,
                 clean: Clean | None = None):
        """`clean`: the clean model episodes are compared with (episode.clean_model; None:
        trained here)."""
        self.limit = limit
        self.clean = clean_model(train, test, seed, budget, against=against) if clean is None \
            else clean
        self.train, self.test, self.against = train, test, against
        self.target, self.seed, self.budget = target, seed, budget
        if isinstance(train, TextDataset):
            space = text_space.TextSpace(train)
            self._decode, dimensions = space.decode, text_space.DIMENSIONS
        else:
            self._decode = lambda point, target, seed: decode(point, train.x.shape[-2:],
                                                               target, seed)
            dimensions = DIMENSIONS
        self.action_space = gym.spaces.Box(-1.0, 1.0, (dimensions,), dtype=np.float32)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (3,), dtype=np.float32)
        self.episodes: list[Episode] = []
        self._last = np.zeros(3, dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return self._last.copy(), {}

    def step(self, action):
        if self.limit is not None and len(self.episodes) >= self.limit:
            raise BudgetSpent
        config = self._decode(action, self.target, self.seed + len(self.episodes))
        episode = run_episode(config, self.train, self.test, self.against,
                              seed=self.seed + len(self.episodes), budget=self.budget,
                              clean=self.clean, run_seed=self.seed)
        self.episodes.append(episode)
        self._last = np.array([episode.attack_success, episode.detection, episode.reward],
                              dtype=np.float32)
        return self._last.copy(), episode.reward, True, False, {"episode": episode}
