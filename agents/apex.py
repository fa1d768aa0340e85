"""DQN beyond one process: Ape-X-style actors on Ray (Horgan et al., 2018), one learner.

`train-dqn --actors N` starts N Ray actors, each with its own vector env (`--envs-per-actor`)
and its own fixed epsilon on the Ape-X ladder eps_i = eps ** (1 + alpha * i / (N - 1)). In
rounds, each actor plays `--chunk-steps` steps with the newest weights it was sent and returns
them as the replay buffer stores them: each env's new frame once (uint8), the action, reward
and flags. Lane j of actor i is lane i * E + j of the learner's one buffer, so frame stacks stay
exact across episode ends and the ring's wrap-around, as in one process. The learner adds a
round whole (a round that did not arrive whole adds nothing) and learns while the actors play
the next one. Fresh weights travel through Ray's object store every `--weight-sync-every`
updates.

The replay ratio is a setting: by default one update per `--train-frequency` env steps summed
over all actors (the actors wait for the learner: each plays one round ahead at most);
`--replay-ratio free` lets both run flat out and logs the ratio that resulted.

An actor that dies (killed, out of memory, its node lost) is restarted by Ray; its lanes' last
episodes are cut there, its new envs start new ones, one line goes to the log, the run goes on.
`--ray-address auto` (or an address) joins a running cluster; without it a local Ray starts
with this machine's cores, bound to 127.0.0.1.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import deque
from typing import Any

import numpy as np
import torch

from agents.checkpoint import build_from_spec, spec_for
from agents.config import DQNConfig, env_options
from agents.heads import explore_with_noise
from agents.learner import build_learner
from agents.rollout import epsilon_greedy
from agents.training import (
    EpisodeTracker,
    Every,
    LiveViewer,
    evaluate_during_training,
    replay_device,
)
from envs import GameSpaces, is_pixel_space, make_vector_env
from envs.wrappers import stack_clearing
from playground import tags
from playground.errors import UserError
from playground.lifecycle import Run
from playground.notes import note, say
from playground.progress import Progress
from playground.seeding import seed_everything

PLACEMENT_TIMEOUT_SECONDS = 300  # how long the learner waits for every actor to start


def epsilon_ladder(actors: int, epsilon: float = 0.4, alpha: float = 7.0) -> list[float]:
    """Each actor's fixed exploration: eps ** (1 + alpha * i / (N - 1)) (eps alone for N = 1)."""
    if actors == 1:
        return [epsilon]
    return [epsilon ** (1 + alpha * index / (actors - 1)) for index in range(actors)]


class ActorWorker:
    """One actor: a vector env of `envs_per_actor` lanes, a CPU copy of the Q-network and a
    fixed epsilon. Run by Ray as an actor process (`ray.remote(ActorWorker)`), or in-process
    by tests."""

    def __init__(
        self, settings: dict[str, Any], index: int, epsilon: float, weights: dict[str, Any]
    ) -> None:
        torch.set_num_threads(1)
        cfg = DQNConfig(**settings)
        self.cfg, self.index, self.epsilon = cfg, index, epsilon
        seed = cfg.seed + 7919 * (index + 1)
        self.envs = make_vector_env(cfg.env_id, cfg.envs_per_actor, seed=seed, **env_options(cfg))
        self.clearing = stack_clearing(self.envs)  # --life-loss-clears-stack
        space = self.envs.single_observation_space
        self.pixels = is_pixel_space(space)
        spec = spec_for(cfg, tuple(space.shape), int(self.envs.single_action_space.n))
        self.network = build_from_spec(spec).eval()
        explore_with_noise(self.network)  # --noisy: the actors explore through the noise
        self.network.load_state_dict(weights["q_network"])
        self.version = int(weights["version"])
        self.rng = np.random.default_rng(seed)
        self.observations, infos = self.envs.reset(seed=seed)
        self.games = EpisodeTracker(cfg.envs_per_actor, cfg.life_loss_terminal, infos.get("lives"))
        self.fresh = True  # the next round starts with the envs' first frames

    def _frames(self, observations: np.ndarray) -> np.ndarray:
        """What the buffer stores of an observation: the newest frame of a stack."""
        return observations[:, -1] if self.pixels else observations

    def placement(self) -> dict[str, Any]:
        """Where this actor runs: its process and Ray node."""
        import ray

        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()}

    def first_frames(self) -> np.ndarray:
        """The envs' first frames, for the learner's `start_frames`; rounds then go on from them."""
        self.fresh = False
        return self._frames(self.observations)

    def collect(self, steps: int, weights: dict[str, Any] | None = None) -> dict[str, Any]:
        """Play `steps` vector-env steps (after taking `weights` when given). A restarted
        actor's first round begins with its envs' first frames (entry 0, no action)."""
        started = time.perf_counter()
        if weights is not None:
            self.network.load_state_dict(weights["q_network"])
            self.version = int(weights["version"])
        lanes = self.cfg.envs_per_actor
        newest = self._frames(self.observations)
        frames = np.zeros((steps, *newest.shape), newest.dtype)
        actions = np.zeros((steps, lanes), np.int64)
        rewards = np.zeros((steps, lanes), np.float32)
        terminated = np.zeros((steps, lanes), bool)
        truncated = np.zeros((steps, lanes), bool)
        learning_done = np.zeros((steps, lanes), bool)
        stack_restart = np.zeros((steps, lanes), bool)
        returns: list[float] = []
        lengths: list[int] = []
        fresh = self.fresh
        first = 0
        if fresh:
            frames[0] = self._frames(self.observations)
            first, self.fresh = 1, False
        for t in range(first, steps):
            with torch.no_grad():
                q_values = self.network(torch.as_tensor(self.observations))
            chosen = epsilon_greedy(q_values, self.epsilon, self.rng)
            observations, reward, term, trunc, infos = self.envs.step(chosen)
            lost_life, finished = self.games.step(reward, term, trunc, infos)
            if lost_life is not None:
                learning_done[t] = lost_life
            if self.clearing is not None:  # the lanes whose stack now holds the newest frame alone
                stack_restart[t] = self.clearing.lost
            frames[t], actions[t], rewards[t] = self._frames(observations), chosen, reward
            terminated[t], truncated[t] = term, trunc
            for score, length in finished:
                returns.append(score)
                lengths.append(length)
            self.observations = observations
        return {
            "index": self.index,
            "fresh": fresh,
            "frames": frames,
            "actions": actions,
            "rewards": rewards,
            "terminated": terminated,
            "truncated": truncated,
            "learning_done": learning_done,
            "stack_restart": stack_restart,
            "returns": returns,
            "lengths": lengths,
            "version": self.version,
            "seconds": time.perf_counter() - started,
        }


def wire_bytes(chunk: dict[str, Any]) -> int:
    """Bytes of the arrays a round carries (frames, actions, rewards, flags)."""
    flags = ("terminated", "truncated", "learning_done", "stack_restart")
    names = ("frames", "actions", "rewards", *flags)
    return sum(chunk[name].nbytes for name in names)


def add_round(replay: Any, chunks: list[dict[str, Any]], lanes: int, clip_rewards: bool) -> int:
    """Add one round (a chunk from every actor, all of the same length) to the buffer, step by
    step, lane i * lanes + j for lane j of actor i; return the env steps added. A restarted
    actor's lanes are cut first (`end_episodes`), so its first frames start new episodes."""
    chunks = sorted(chunks, key=lambda chunk: chunk["index"])
    for chunk in chunks:
        if chunk["fresh"]:
            replay.end_episodes(range(chunk["index"] * lanes, (chunk["index"] + 1) * lanes))

    def joined(name: str, t: int) -> np.ndarray:
        return np.concatenate([chunk[name][t] for chunk in chunks])

    steps = chunks[0]["frames"].shape[0]
    if any(chunk["frames"].shape[0] != steps for chunk in chunks):
        raise AssertionError(
            f"a round's chunks differ in length: {[(c['index'], c['frames'].shape[0], c['fresh']) for c in chunks]}"
        )
    added = 0
    for t in range(steps):
        rewards = joined("rewards", t)
        replay.add_frames(
            joined("actions", t),
            np.sign(rewards) if clip_rewards else rewards,
            joined("terminated", t),
            joined("truncated", t),
            torch.from_numpy(joined("frames", t)),
            joined("learning_done", t),
            joined("stack_restart", t),
        )
        # Entry 0 of a fresh chunk is a first frame, not a step.
        added += sum(lanes for chunk in chunks if not (chunk["fresh"] and t == 0))
    return added


def _ray():
    try:
        import ray
    except ImportError:
        raise UserError(
            "--actors needs Ray: pip install 'ray>=2.9' (it is in requirements.txt)"
        ) from None
    return ray


def train_apex(
    cfg: DQNConfig,
    run: Run,
    device: torch.device,
    previous: dict[str, Any] | None,
    spaces: GameSpaces,
) -> None:
    """The learner of an Ape-X run (see the module docstring)."""
    ray = _ray()
    seed_everything(cfg.seed)
    lanes = cfg.envs_per_actor
    learner = build_learner(
        cfg, run, device, previous, spaces, lanes=cfg.actors * lanes,
        replay_device=replay_device(
            cfg.replay_device, device, cfg.buffer_size, spaces.observation_shape, cfg.frame_stack
        ),
    )  # fmt: skip

    started_ray = not ray.is_initialized()
    if started_ray:
        if cfg.ray_address:
            try:
                ray.init(address=cfg.ray_address, logging_level="ERROR", log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as error:
                first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
                raise UserError(
                    f"--ray-address {cfg.ray_address}: no Ray cluster could be joined "
                    f"({first_line[:160]}); start one with `ray start --head`, or leave the "
                    "flag out for a local Ray"
                ) from None
        else:
            # A local Ray, on loopback only. Each actor asks for one CPU: with more actors than
            # cores they share the cores (rather than wait forever for a free one). "local":
            # a Ray of its own even when `ray start` left a cluster on this machine (plain
            # ray.init() would join that one, and refuse num_cpus with a traceback).
            ray.init(
                address="local",
                num_cpus=max(os.cpu_count() or 1, cfg.actors),
                _node_ip_address="127.0.0.1",
                include_dashboard=False,
                logging_level="ERROR",
                log_to_driver=False,
            )
    try:
        _loop(cfg, run, device, learner, ray, lanes)
    finally:
        if started_ray:
            ray.shutdown()


def _weights(learner: Any, version: int) -> dict[str, Any]:
    return {
        "q_network": {key: value.cpu() for key, value in learner.q_network.state_dict().items()},
        "version": version,
    }


def _start_actors(cfg, run, ray, weights_ref, step: int, lanes: int) -> list[Any]:
    """The actors on Ray, each with its epsilon of the ladder, once every one has started
    (their placements written to actors.json); one line when the cluster cannot hold them."""
    epsilons = epsilon_ladder(cfg.actors, cfg.actor_epsilon, cfg.actor_alpha)
    if cfg.noisy:  # the noise explores: no epsilon
        epsilons = [0.0] * cfg.actors
    settings = {**vars(cfg)}
    options: dict[str, Any] = {"num_cpus": 1, "max_restarts": -1, "max_task_retries": 0}
    if cfg.actor_resource:
        options["resources"] = {cfg.actor_resource: 1}
    remote_actor = ray.remote(ActorWorker).options(**options)
    actors = [
        remote_actor.remote(settings, index, epsilons[index], weights_ref)
        for index in range(cfg.actors)
    ]
    for index, epsilon in enumerate(epsilons):
        run.logger.scalar(tags.actor(tags.ACTOR_EPSILON, index), epsilon, step)
    try:
        placements = ray.get(
            [actor.placement.remote() for actor in actors], timeout=PLACEMENT_TIMEOUT_SECONDS
        )
    except ray.exceptions.GetTimeoutError:
        available = ray.cluster_resources()
        raise UserError(
            f"--actors {cfg.actors}: not every actor could start within "
            f"{PLACEMENT_TIMEOUT_SECONDS} s (each needs 1 CPU"
            + (f" and 1 {cfg.actor_resource}" if cfg.actor_resource else "")
            + f"; the cluster has {available.get('CPU', 0):g} CPUs"
            + (
                f" and {available.get(cfg.actor_resource, 0):g} {cfg.actor_resource}"
                if cfg.actor_resource
                else ""
            )
            + "): lower --actors or add nodes"
        ) from None
    (run.dir / "actors.json").write_text(json.dumps(placements, indent=1) + "\n")
    say(
        f"{cfg.actors} actors x {lanes} envs, epsilons "
        + ", ".join(f"{epsilon:.3g}" for epsilon in epsilons)
        + f"; replay ratio {cfg.replay_ratio}"
    )
    return actors


def _loop(cfg, run, device, learner, ray, lanes) -> None:
    logger, replay = run.logger, learner.replay
    version = 0
    # Ray restarts a dead actor with its constructor's arguments, which live in the object
    # store only while a reference to them does: `first_weights` is held until the run ends
    # (`weights_ref` moves on to each newer version).
    first_weights = ray.put(_weights(learner, version))
    weights_ref = first_weights
    actors = _start_actors(cfg, run, ray, first_weights, learner.step, lanes)
    replay.start_frames(np.concatenate(ray.get([actor.first_frames.remote() for actor in actors])))

    step = learner.step
    progress = Progress(cfg.total_steps, initial=step, enabled=cfg.progress)
    recent_returns: deque[float] = deque(maxlen=50)
    log, evaluation, save = (
        Every(cfg.log_every, step),
        Every(cfg.eval_every, step),
        Every(cfg.checkpoint_every, step),
    )
    last_log = (step, learner.updates, time.perf_counter())
    updates_at_sync = learner.updates
    wire, wire_steps, restarts = 0, 0, 0
    lanes_total = cfg.actors * lanes

    def next_length(after: int) -> int:
        """Steps per actor of the next round: a whole chunk, or what is left to play."""
        return min(cfg.chunk_steps, max(0, math.ceil((cfg.total_steps - after) / lanes_total)))

    length = next_length(step)
    pending = {index: actor.collect.remote(length) for index, actor in enumerate(actors)}
    replay_ready = False
    viewer = LiveViewer(cfg, learner, run.dir)  # with --watch, a viewer beside the run
    try:
        while pending and not run.stop_requested:
            # Free ratio: learn until this round has arrived (fixed: the learning happened
            # right after the last round was added, while the actors played this one).
            if cfg.replay_ratio == "free" and replay_ready:
                while ray.wait(list(pending.values()), num_returns=len(pending), timeout=0)[1]:
                    learner.update_once()
                    if run.stop_requested:
                        break
            chunks, died = _gather_round(ray, pending, actors, length, weights_ref, step)
            if died:
                restarts += died
                logger.scalar(tags.ACTOR_RESTARTS, restarts, step)
            # The next round starts now, with new weights when they are due.
            if learner.updates - updates_at_sync >= cfg.weight_sync_every:
                version += 1
                weights_ref = ray.put(_weights(learner, version))
                updates_at_sync = learner.updates
                sent = weights_ref
            else:
                sent = None
            # (A fresh chunk's first entry is its first frames, not a step.)
            arrived = sum(chunk["frames"].shape[0] - chunk["fresh"] for chunk in chunks) * lanes
            length = next_length(step + arrived)
            pending = (
                {index: actor.collect.remote(length, sent) for index, actor in enumerate(actors)}
                if length
                else {}
            )
            added = add_round(replay, chunks, lanes, cfg.clip_rewards)
            wire += sum(wire_bytes(chunk) for chunk in chunks)
            wire_steps += added
            for chunk in chunks:
                for score, game_steps in zip(chunk["returns"], chunk["lengths"], strict=True):
                    recent_returns.append(score)
                    logger.scalar(tags.EPISODIC_RETURN, score, step + added)
                    logger.scalar(tags.EPISODIC_LENGTH, game_steps, step + added)
            replay_ready = replay_ready or (
                step + added > cfg.learning_starts and len(replay) >= cfg.batch_size
            )
            if replay_ready and cfg.replay_ratio == "fixed":
                learner.learn(added)
            else:
                learner.advance(added)  # the free ratio's updates were made while waiting
            step = learner.step

            if log.due(step):
                now = time.perf_counter()
                replay_ratio = (
                    learner.updates * cfg.train_frequency / max(step - cfg.learning_starts, 1)
                )
                sps = _log_speeds(
                    logger, step, learner.updates, last_log, now, replay_ratio, len(pending),
                    wire / max(wire_steps, 1), chunks, lanes,
                )  # fmt: skip
                last_log = (step, learner.updates, now)
                learner.log_losses(run, step)
                mean_return = float(np.mean(recent_returns)) if recent_returns else float("nan")
                progress.update(step, sps=sps, ret=mean_return, updates=learner.updates)
            if evaluation.due(step):
                mean_score = evaluate_during_training(
                    cfg, run, learner.playing_network, device, step
                )
                if mean_score is not None:
                    learner.save_best(run, mean_score)
            if save.due(step):
                learner.save_latest(run)
            viewer.tick()
    finally:
        progress.close()
        for actor in actors:
            ray.kill(actor)
    learner.save_latest(run)
    viewer.close()
    say(
        f"bytes per transition on the wire: {wire / max(wire_steps, 1):.0f}; "
        f"{learner.updates:,} updates for {step:,} env steps; actor restarts: {restarts}"
    )
    run.finish(step, cfg.runs_dir)


def _gather_round(
    ray: Any, pending: dict[int, Any], actors: list[Any], length: int, weights_ref: Any,
    step: int,
) -> tuple[list[dict[str, Any]], int]:  # fmt: skip
    """This round's chunks, one per actor, and how many actors died playing it.

    A dead actor's round never arrives (Ray returns results whole, so nothing half-received
    can enter the buffer). Ray restarts it with new envs; its lanes' episodes are cut and its
    first round after the restart, which starts with its first frames, stands in for the lost
    one."""
    chunks, died = [], []
    for index, reference in pending.items():
        try:
            chunks.append(ray.get(reference))
        except ray.exceptions.RayActorError:
            died.append(index)
    if died:
        note(
            f"actor(s) {', '.join(map(str, died))} died at step {step}; Ray restarted them; "
            "their games start over, the run goes on"
        )
        for index in died:
            chunks.append(_restarted_round(ray, actors[index], length, weights_ref))
    return chunks, len(died)


def _log_speeds(
    logger: Any,
    step: int,
    updates: int,
    last_log: tuple[int, int, float],
    now: float,
    replay_ratio: float,
    queue_depth: int,
    bytes_per_transition: float,
    chunks: list[dict[str, Any]],
    lanes: int,
) -> float:
    """Log the run's rates since the last log (`last_log`: its step, updates and time) and
    each actor's; returns the env steps per second."""
    seconds = max(now - last_log[2], 1e-9)
    sps = (step - last_log[0]) / seconds
    logger.scalar(tags.SPS, sps, step)
    logger.scalar(tags.UPDATES_PER_SEC, (updates - last_log[1]) / seconds, step)
    logger.scalar(tags.REPLAY_RATIO, replay_ratio, step)
    logger.scalar(tags.QUEUE_DEPTH, queue_depth, step)
    logger.scalar(tags.BYTES_PER_TRANSITION, bytes_per_transition, step)
    for chunk in chunks:
        index = chunk["index"]
        actor_seconds = max(chunk["seconds"], 1e-9)
        actor_sps = chunk["frames"].shape[0] * lanes / actor_seconds
        logger.scalar(tags.actor(tags.ACTOR_SPS, index), actor_sps, step)
        logger.scalar(tags.actor(tags.ACTOR_WEIGHTS_VERSION, index), chunk["version"], step)
    return sps


def _restarted_round(
    ray: Any, actor: Any, steps: int, weights_ref: Any, seconds: float = 300
) -> dict[str, Any]:
    """A round from an actor Ray is restarting: asked again until it answers."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return ray.get(actor.collect.remote(steps, weights_ref))
        except ray.exceptions.RayActorError:
            if time.monotonic() > deadline:
                raise UserError(
                    f"an actor did not come back within {seconds:.0f} s; the run stops here "
                    "(latest.pt is kept): continue with --resume"
                ) from None
            time.sleep(1.0)
