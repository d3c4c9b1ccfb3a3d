"""Config sections of the tasks beyond labels: reinforcement learning's environment and algorithm.

One rule for every task: the task is ``data.task`` (``binary``, ``multiclass``, ``regression``,
``clustering``, ``anomaly``, ``embedding``, ``reinforcement``); a top-level ``task:`` key is the same
key, moved there on load, so ``task: reinforcement`` and ``data: {task: reinforcement}`` are one
config.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from fitwell.config.section import Section

RL_ALGORITHMS = ("ppo", "a2c", "dqn", "sac", "td3")
UNSUPERVISED = ("clustering", "anomaly", "embedding")
AUTOENCODERS = ("autoencoder", "denoising_autoencoder", "variational_autoencoder")


class ClusterConfig(Section):
    """task clustering: the scikit-learn method and the number of clusters."""

    method: Literal["kmeans", "gmm", "hdbscan", "agglomerative"] = "kmeans"
    k: Annotated[int, Field(ge=2)] | Literal["auto"] = Field(
        "auto", description="auto: the best silhouette (kmeans, agglomerative) or BIC (gmm) from 2 to"
                            " k_max; hdbscan finds its own")
    k_max: int = Field(10, ge=2)
    min_cluster_size: int = Field(5, ge=2, description="hdbscan: the smallest group that is a cluster")


class AnomalyConfig(Section):
    """task anomaly: how rows are scored, and the share of training rows flagged."""

    method: Literal["isolation_forest", "reconstruction"] = Field(
        "isolation_forest", description="reconstruction: the autoencoder's error (model.name: autoencoder)")
    contamination: float = Field(0.05, gt=0, lt=0.5, description="Share of training rows above the threshold")
    label: bool | int | str | None = Field(None, description="With data.labels (for evaluation only): the"
                                                             " value marking an anomaly; default 1/True, else"
                                                             " the rarer value")


class EnvConfig(Section):
    """The Gymnasium environment a reinforcement run trains on."""

    id: str = Field(description="A Gymnasium id (CartPole-v1) or module:Class for your own gymnasium.Env")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Arguments of gymnasium.make / Class")
    num_envs: int = Field(1, ge=1, description="Copies stepped side by side (a vectorised env)")
    max_episode_steps: int | None = Field(None, ge=1, description="Truncate episodes at this length")


class RLConfig(Section):
    """The algorithm (Stable-Baselines3) and its schedule of steps, evaluations and checkpoints."""

    algorithm: Literal["ppo", "a2c", "dqn", "sac", "td3"] = "ppo"
    steps: int = Field(100_000, ge=1, description="Environment steps in all (over every env copy)")
    eval_episodes: int = Field(100, ge=1, description="Episodes of the final evaluation (mean +- std return)")
    eval_every: int = Field(10_000, ge=1, description="Steps between evaluations during training (each"
                                                      " logged as val_mean_return; what tune prunes on)")
    eval_during: int = Field(10, ge=1, description="Episodes of each evaluation during training")
    checkpoint_every: int = Field(10_000, ge=1, description="Steps between checkpoints (--resume)")
    deterministic_eval: bool = Field(True, description="Evaluate the policy's most likely action")
    policy: str = Field("auto", description="An SB3 policy name; auto: CnnPolicy for image observations,"
                                            " MultiInputPolicy for dicts, else MlpPolicy")
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict, description="Arguments of the SB3 algorithm (n_steps, gamma, batch_size...);"
                                          " 'lin_0.001' is a rate falling linearly to 0 (as in RL Zoo)")
    gif_frames: int = Field(200, ge=0, description="Frames of the report's rollout GIF (0: none)")


class PretrainConfig(Section):
    """Self-supervised pretraining of a supervised run's network before it learns the labels:
    rebuild the numbers of every row -- the training rows and ``source``'s unlabelled ones --
    from a corrupted copy, then fine-tune (the ``transfer`` keys: freezing, gradual unfreezing,
    discriminative rates)."""

    objective: Literal["masked_features", "denoising"] = Field(
        "masked_features", description="masked_features: a share of each row's numbers replaced by"
                                       " another row's (as VIME / SCARF); denoising: Gaussian noise")
    source: str | None = Field(None, description="A CSV/Parquet/JSONL table of unlabelled rows (the"
                                                 " same input columns; a target column is ignored)")
    epochs: int = Field(50, ge=1)
    mask_share: float = Field(0.3, gt=0, lt=1, description="masked_features: share of numbers replaced")
    noise: float = Field(0.3, gt=0, description="denoising: noise std (numbers are standardised)")
    lr: float | None = Field(None, gt=0, description="Default: train.lr")


def move_task_key(raw: Any) -> Any:
    """A top-level ``task:`` is ``data.task``; both given and different is an error."""
    if not isinstance(raw, dict) or "task" not in raw:
        return raw
    raw = dict(raw)
    task = raw.pop("task")
    data = dict(raw.get("data") or {})
    if data.get("task") not in (None, "auto", task):
        raise ValueError(f"task: {task!r} and data.task: {data['task']!r} disagree; they are one key,"
                         " give it once")
    data["task"] = task
    raw["data"] = data
    return raw


def task_conflicts(config: Any) -> list[str]:
    """What a config's task cannot go with: a reinforcement run needs ``env`` and has no table."""
    reinforcement = config.data.task == "reinforcement"
    problems = []
    for section, task in (("cluster", "clustering"), ("anomaly", "anomaly")):
        if getattr(config, section) is not None and config.data.task != task:
            problems.append(f"the {section} section belongs to a {task} run; add task: {task}")
    anomaly = config.anomaly
    if anomaly is not None and anomaly.method == "reconstruction" and config.model.name not in AUTOENCODERS:
        problems.append(f"anomaly.method reconstruction scores rows by an autoencoder's error; set model.name"
                        f" to one of {', '.join(AUTOENCODERS)} (got {config.model.name!r})")
    if config.pretrain is not None:
        others = (("transfer.weights", config.transfer.weights), ("privacy", config.privacy),
                  ("ensemble", config.ensemble))
        clash = [name for name, value in others if value]
        if config.data.task in (*UNSUPERVISED, "reinforcement"):
            clash.append(f"task {config.data.task}")
        if clash:
            problems.append(f"pretrain starts a supervised network from its own weights; it cannot go with"
                            f" {', '.join(clash)}")
    if config.data.task in UNSUPERVISED and config.data.target is not None:
        problems.append(f"data.target: a {config.data.task} run has no target to predict; to score it against"
                        f" known groups, give {config.data.target!r} as data.labels (for evaluation only,"
                        " never an input)")
    if config.data.labels is not None and config.data.task not in ("clustering", "anomaly", "embedding"):
        problems.append("data.labels: known groups for evaluating a clustering or anomaly run; a supervised"
                        " run predicts data.target")
    if config.data.task in UNSUPERVISED and (config.ensemble is not None or config.privacy is not None):
        problems.append(f"a {config.data.task} run takes no ensemble or privacy section")
    if reinforcement and config.env is None:
        problems.append("task reinforcement needs an env section, e.g. env: {id: CartPole-v1}")
    if not reinforcement and (config.env is not None or config.rl is not None):
        problems.append("the env and rl sections belong to a reinforcement run; add task: reinforcement")
    if reinforcement:
        table = (("data.source", config.data.source), ("data.target", config.data.target),
                 ("ensemble", config.ensemble), ("privacy", config.privacy))
        used = [name for name, value in table if value]
        if used:
            problems.append(f"a reinforcement run learns from its env, not a table: drop {', '.join(used)}")
    return problems
