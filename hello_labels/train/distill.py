"""Fit a projector's adapter so that ``projector(x)`` reproduces target logits under the students' augmentations.

One loop serves ``distill`` (teacher online), ``convert`` (SRe2L label directory) and per-image label files.
Checkpoints are atomic and carry optimiser, schedule and RNG state; since every random choice of a step is a
function of the step number (see :mod:`hello_labels.data`), ``resume=True`` after a kill finishes with the same
adapter as an uninterrupted run. Under ``torchrun`` it trains with DistributedDataParallel; rank 0 writes.
"""
from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, List, Optional

import torch
from tqdm.auto import tqdm

from ..constants import LOSSES
from ..distributed import DistEnv, on_main
from ..errors import BadInputError, CorruptFileError, HelloLabelsError, first_line
from ..files import atomic_torch_save, atomic_write_json, loads_json, remove_stale_temps
from ..fingerprint import source_fingerprint, tensor_digest
from ..identity import data_identity
from ..labels.augment import apply_mix, mixed_cross_entropy
from ..labels.targets import Targets
from ..labels.views import BatchPlan, loader
from ..runs import RunLock, check_settings, settings_difference
from .evaluate import collect, discrepancy, fidelity
from .settings import DistillConfig  # noqa: F401  (defined torch-free for the CLI; imported from here)

STATE_FILE = "train_state.pt"
METRICS_FILE = "metrics.json"
LOG_EVERY = 10  # steps between reads of the running loss/agreement (history, progress bar)
# config.json metadata that describes one run: replaced as a whole by each run (a projector trained from another
# one, --init, keeps none of its predecessor's, license included)
RUN_METADATA = ("teacher", "dataset", "labels_trained", "command", "license", "distill", "fidelity", "fidelity_mixed")


def _autocast(precision: str, device: torch.device):
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "fp32":
        return contextlib.nullcontext(), None
    if precision not in ("bf16", "fp16"):
        raise BadInputError(f"unknown precision '{precision}'; expected auto, fp32, bf16 or fp16")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    return torch.autocast(device.type, dtype=dtype), scaler


def loss_fn(cfg: DistillConfig, logits: torch.Tensor, target: torch.Tensor, labels: torch.Tensor, plan,
            size=None) -> torch.Tensor:
    """``MSE(logits)`` or ``T²·KL`` at T, plus ``ce_weight·CE`` against the (mixed) hard labels; ``size``: ``(H, W)``
    of the mixed images (CutMix weights the hard labels by the pasted area)."""
    loss = discrepancy(logits, target, cfg.loss, cfg.temperature)
    if cfg.ce_weight:
        loss = loss + cfg.ce_weight * mixed_cross_entropy(logits, labels, plan.mix, size)
    return loss


# Calibration bounds: logits whose per-view spread is below MIN_SPREAD carry no class signal (a zero head gives
# exactly 0), and a scale factor outside [1/MAX_FACTOR, MAX_FACTOR] says the fit is noise, not a scale.
MIN_SPREAD = 1e-4
MAX_FACTOR = 1e3


@torch.no_grad()
def calibrate(projector, targets: Targets, plans: List[BatchPlan]) -> float:
    """Fit the head's scale and per-class bias so the untrained projector's logits match the targets' in scale
    and offset (least squares on per-view centred logits); returns the scale factor applied.

    Only what is identifiable is fitted: when the projector's logits have no spread across classes (a zero head)
    or the targets have none (constant targets), the scale stays and only the bias is fitted."""
    logits, target, _ = collect(projector, targets, plans)
    if not (torch.isfinite(logits).all() and torch.isfinite(target).all()):
        what = "target" if torch.isfinite(logits).all() else "projector"
        raise HelloLabelsError(f"calibration: the {what} logits contain inf/NaN; check the labels or pass "
                               f"--no-calibrate")
    logits, target = logits.double(), target.double()
    z, t = logits - logits.mean(-1, keepdim=True), target - target.mean(-1, keepdim=True)
    a = 1.0
    if z.std() > MIN_SPREAD and t.std() > MIN_SPREAD:
        a = float((z * t).sum() / (z * z).sum())
        if not math.isfinite(a) or a <= 0:  # anti-correlated at init: match the spread instead
            a = float(t.std() / z.std())
        a = min(max(a, 1 / MAX_FACTOR), MAX_FACTOR)
    head = projector.head
    head.logit_scale.add_(math.log(a))
    head.bias.mul_(a).add_((target - a * logits).mean(0).to(head.bias))
    return a


def _schedule(cfg: DistillConfig) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor


def projector_fingerprint(projector) -> dict:
    """Its full config (less free-form metadata) and a digest of its adapter tensors."""
    config = {k: v for k, v in projector.config_dict().items() if k != "metadata"}
    return {"config": config, "adapter": tensor_digest(projector.adapter_state_dict())}


def _fingerprint(projector, targets, cfg: DistillConfig) -> dict:
    """Everything the trained adapter depends on: settings, targets (teacher weights, label files), projector,
    data (every image decoded and hashed). Checked on resume."""
    settings = {k: v for k, v in asdict(cfg).items() if k not in DistillConfig.RESUMABLE}
    images = targets.images
    data = {"source": source_fingerprint(images.source), "size": images.size, "mean": list(images.mean),
            "std": list(images.std), "scale": list(images.scale), "ratio": list(images.ratio),
            "interpolation": images.interpolation}
    return {"config": settings, "targets": targets.fingerprint(), "projector": projector_fingerprint(projector),
            "data": data}


def _check_config(cfg: DistillConfig) -> None:
    """One line naming the first setting out of range (a 0 would divide by zero or draw no views, mid-run)."""
    positive = {"steps": cfg.steps, "batch_size": cfg.batch_size, "checkpoint_every": cfg.checkpoint_every}
    non_negative = {"eval_every": cfg.eval_every, "eval_views": cfg.eval_views, "warmup_steps": cfg.warmup_steps,
                    "num_workers": cfg.num_workers}
    for name, value in positive.items():
        if value <= 0:
            raise BadInputError(f"{name} must be positive, got {value}")
    for name, value in non_negative.items():
        if value < 0:
            raise BadInputError(f"{name} must be >= 0, got {value}")


def distill(projector, targets: Targets, out_dir, config: Optional[DistillConfig] = None, resume: bool = False,
            progress: bool = True, device=None, metadata: Optional[dict] = None, data_name: str = "data"):
    """Train ``projector``'s adapter on ``targets`` and save it to ``out_dir`` (a ``save_pretrained`` directory).

    ``targets``: a :class:`~hello_labels.labels.targets.Targets` (``TeacherTargets``, ``StoredTargets`` or
    ``ImageLabelTargets``). ``resume=True`` continues from ``out_dir/train_state.pt``. Returns a dict of
    final metrics (also written to ``out_dir/metrics.json``), with the fidelity on ``eval_views`` held-out views
    at the end (none if 0). ``metadata`` (no local paths: it is published) goes into ``config.json`` with the
    settings, that fidelity and the data's identity (``data_name``, image and class counts, content fingerprint).
    """
    cfg = config or DistillConfig()
    if cfg.loss not in LOSSES:
        raise BadInputError(f"unknown loss '{cfg.loss}'; expected one of {list(LOSSES)}")
    _check_config(cfg)
    env = DistEnv.setup(device)
    if targets.fixed_batch_size is None and cfg.batch_size % env.world_size:
        raise BadInputError(f"batch size {cfg.batch_size} is not divisible by {env.world_size} processes")
    out = Path(out_dir)
    lock = RunLock(out)  # rank 0 writes, so rank 0 alone holds it
    try:
        fingerprint = on_main(env, lambda: _start(lock, out, projector, targets, cfg))
        metadata = dict(metadata or {}, dataset=data_identity(data_name, fingerprint["data"]["source"],
                                                              projector.num_classes))
        return _distill(projector, targets, out, cfg, resume, progress, metadata, env, fingerprint)
    finally:
        lock.release()


def _start(lock: RunLock, out: Path, projector, targets, cfg: DistillConfig) -> dict:
    """Before any work: lock ``out`` (created, writable), clear a killed run's temporaries, check the inputs."""
    lock.acquire()
    remove_stale_temps(out, recursive=False)
    return _fingerprint(projector, targets, cfg)


@dataclass
class _Optimiser:
    """AdamW (weight decay on matrices only), warmup then cosine decay, autocast and, for fp16, a gradient scaler."""

    params: list
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    autocast: object
    scaler: Optional[torch.amp.GradScaler]
    grad_clip: float

    @classmethod
    def build(cls, params: list, cfg: DistillConfig, device: torch.device) -> "_Optimiser":
        for p in params:
            p.requires_grad_(True)
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(cfg))
        return cls(params, optimizer, scheduler, *_autocast(cfg.precision, device), cfg.grad_clip)

    def step(self, loss: torch.Tensor) -> None:
        """Backward, clip, update, schedule."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()


@dataclass
class _Progress:
    """Where a run stands: the next step, its history, the running loss and agreement, seconds spent before."""

    start: int = 0
    history: list = field(default_factory=list)
    loss: Optional[float] = None
    agreement: Optional[float] = None
    seconds: float = 0.0


def _distill(projector, targets, out: Path, cfg: DistillConfig, resume: bool, progress: bool, metadata,
             env: DistEnv, fingerprint: dict) -> dict:
    """:func:`distill` once ``out`` is locked and the inputs are checked: resume, calibrate, train, finish."""
    state_path = out / STATE_FILE
    was_merged = projector.merged
    projector.unmerge()  # merged deltas are plain weights: the LoRA tensors would get no gradient
    projector.to(env.device)
    targets.to(env.device)
    opt = _Optimiser.build(projector.trainable_parameters(), cfg, env.device)
    run = _resume(state_path, resume, fingerprint, projector, opt, env)

    local_batch = targets.fixed_batch_size or cfg.batch_size // env.world_size
    evaluating = bool(cfg.eval_every) and cfg.eval_views > 0 and env.main  # eval_views 0: no evaluation at all
    calibrating = run.start == 0 and cfg.calibrate
    views = cfg.eval_views or DistillConfig.eval_views  # calibration needs views even when evaluation is off
    held_out = targets.held_out(views, local_batch) if calibrating or evaluating else None
    if calibrating:
        calibrate(projector, targets, held_out)

    def save(step: int, seconds: float) -> None:
        _save_state(state_path, step, projector, opt, run, fingerprint, seconds)

    summary = _train(projector, targets, cfg, opt, run, held_out if evaluating else None, local_batch, progress,
                     env, save)
    if env.main:
        _finish(projector, targets, out, cfg, metadata, held_out, local_batch, summary)
    env.barrier()
    if was_merged:
        projector.merge()
    return summary


def _resume(state_path: Path, resume: bool, fingerprint: dict, projector, opt: _Optimiser,
            env: DistEnv) -> _Progress:
    """The checkpoint at ``state_path`` loaded into ``projector`` and ``opt`` (RNG state too) when ``resume`` and
    its settings are this run's; refused when not ``resume``. No checkpoint: step 0."""
    if not state_path.exists():
        if resume and env.main:
            print(f"no checkpoint in {state_path.parent}: starting from step 0")
        return _Progress()
    state = load_state(state_path)
    if not resume:
        differ = settings_difference(state["fingerprint"], fingerprint)
        if differ:
            raise BadInputError(f"{state_path.parent} already holds a training checkpoint of another run ({differ}): "
                                f"choose another output directory")
        raise BadInputError(f"{state_path.parent} already holds a training checkpoint: pass resume=True (--resume) "
                            f"to continue it, or choose another output directory")
    check_settings(state["fingerprint"], fingerprint, f"cannot resume {state_path}", "rerun with the original settings")
    try:
        projector.load_adapter_state_dict(state["adapter"], source=str(state_path))
        opt.optimizer.load_state_dict(state["optimizer"])
        opt.scheduler.load_state_dict(state["scheduler"])
        if opt.scaler is not None and state.get("scaler"):
            opt.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        history = loads_json(state["history"])
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        raise CorruptFileError(f"checkpoint {state_path} does not fit this run ({first_line(err)}): delete it "
                               f"to start over") from err
    running = state.get("running") or {}
    return _Progress(state["step"], history, running.get("loss"), running.get("agreement"),
                     float(running.get("seconds") or 0.0))


def _train(projector, targets, cfg: DistillConfig, opt: _Optimiser, run: _Progress, held_out, local_batch: int,
           progress: bool, env: DistEnv, save: Callable[[int, float], None]) -> dict:
    """Steps ``run.start`` to ``cfg.steps`` (DDP across processes), the history kept in ``run``, fidelity on
    ``held_out`` every ``eval_every`` steps (None: not), ``save(step, seconds)`` at checkpoints; the summary."""
    model = projector
    if env.world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            projector, device_ids=[env.device.index] if env.device.type == "cuda" else None,
            broadcast_buffers=False)
    data, batches = loader(targets.images, targets.plans(run.start, cfg.steps, env.rank, env.world_size,
                                                         local_batch), cfg.steps - run.start, cfg.num_workers)
    bar = tqdm(total=cfg.steps, initial=run.start, disable=not (progress and env.main), desc="distill",
               dynamic_ncols=True)
    model.train()
    t0 = time.perf_counter()
    # running loss/agreement stay on the device; read (a host sync) only every LOG_EVERY steps and at checkpoints
    ema = None if run.loss is None else torch.tensor([run.loss, run.agreement], device=env.device)

    for step, (images, labels, _, _) in zip(range(run.start, cfg.steps), data):
        loss, logits, target = _step(model, targets, cfg, opt, batches.pop(step), images, labels, env.device)
        with torch.no_grad():
            now = torch.stack([loss.detach().float(), (logits.argmax(-1) == target.argmax(-1)).float().mean()])
            ema = now if ema is None else ema.mul_(0.9).add_(now, alpha=0.1)
        bar.update(1)
        done = step + 1
        if done % LOG_EVERY == 0 or done == cfg.steps:
            run.loss, run.agreement = ema.tolist()
            bar.set_postfix(loss=f"{run.loss:.4f}", agree=f"{run.agreement:.1%}", refresh=False)
            run.history.append({"step": done, "loss": run.loss, "agreement": run.agreement,
                                "lr": opt.scheduler.get_last_lr()[0]})
        if held_out is not None and done % cfg.eval_every == 0:
            _check_fidelity(projector, targets, held_out, cfg, run, bar, done)
            model.train()
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            if env.main and done % LOG_EVERY and done != cfg.steps:  # else read just above
                run.loss, run.agreement = ema.tolist()
            if env.main:
                save(done, run.seconds + time.perf_counter() - t0)
            env.barrier()
    bar.close()
    projector.eval()
    return {"steps": cfg.steps, "seconds": run.seconds + time.perf_counter() - t0, "final_loss": run.loss,
            "train_agreement": run.agreement, "history": run.history}


def _step(model, targets, cfg: DistillConfig, opt: _Optimiser, plan, images, labels, device):
    """One optimiser step on a batch: its mix, the targets, the loss; returns loss, logits and target."""
    images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
    mixed = apply_mix(images, plan.mix_type, *plan.mix)
    with opt.autocast:
        target = targets(plan, mixed).float()
        logits = model(mixed)
    loss = loss_fn(cfg, logits.float(), target, labels, plan, mixed.shape[-2:])
    opt.step(loss)
    return loss, logits, target


def _check_fidelity(projector, targets, held_out, cfg: DistillConfig, run: _Progress, bar, done: int) -> None:
    """Agreement and KL on the held-out views mid-run: into the history and onto the progress bar."""
    report = fidelity(projector, targets, held_out, projector.config.class_names, cfg.temperature,
                      in_sample=targets.held_out_in_sample)
    run.history.append({"step": done, "eval_agreement": report.agreement, "eval_kl": report.kl,
                        "eval_in_sample": report.in_sample})
    kind = "in-sample" if report.in_sample else "held-out"
    bar.write(f"step {done}: {kind} agreement {report.agreement:.2%}, KL {report.kl:.4f}")


def _finish(projector, targets, out: Path, cfg: DistillConfig, metadata, held_out, local_batch: int,
            summary: dict) -> None:
    """Rank 0, after the last step: the run's metadata and final fidelity (plain and mixed views) into the
    projector's config and ``summary``, then the projector and ``metrics.json`` saved."""
    meta = projector.config.metadata
    for key in RUN_METADATA:
        meta.pop(key, None)
    meta.update(metadata or {})
    meta["distill"] = {k: v for k, v in asdict(cfg).items() if k not in ("num_workers",)}
    if cfg.eval_views > 0:
        report = fidelity(projector, targets, held_out or targets.held_out(cfg.eval_views, local_batch),
                          projector.config.class_names, cfg.temperature, in_sample=targets.held_out_in_sample)
        summary["fidelity"] = report.to_dict()
        meta["fidelity"] = {k: summary["fidelity"][k] for k in ("agreement", "kl", "temperature", "views",
                                                                 "in_sample", "per_class")}
        mixing = getattr(targets, "mixed_held_out", None)  # sources that make their own mixes (TeacherTargets)
        mixed = mixing(cfg.eval_views, local_batch) if mixing else None
        if mixed:  # what students learn from: mixed views fit worse than plain ones (BENCHMARKS.md, same views)
            report = fidelity(projector, targets, mixed, projector.config.class_names, cfg.temperature)
            summary["fidelity_mixed"] = report.to_dict() | {"mix_type": mixed[0].mix_type}
            meta["fidelity_mixed"] = {k: summary["fidelity_mixed"][k] for k in ("agreement", "kl", "temperature",
                                                                             "views", "mix_type")}
    projector.save_pretrained(out, dtype=cfg.save_dtype)
    atomic_write_json(out / METRICS_FILE, summary)


def _save_state(path, step, projector, opt: _Optimiser, run: _Progress, fingerprint, seconds: float) -> None:
    atomic_torch_save({
        "step": step,
        "adapter": {k: v.detach().cpu().clone() for k, v in projector.adapter_state_dict().items()},
        "optimizer": opt.optimizer.state_dict(),
        "scheduler": opt.scheduler.state_dict(),
        "scaler": opt.scaler.state_dict() if opt.scaler is not None else None,
        "rng": torch.get_rng_state(),
        "history": json.dumps(run.history),
        "fingerprint": fingerprint,
        # the running averages, so metrics.json does not depend on where a kill happened
        "running": {"loss": run.loss, "agreement": run.agreement, "seconds": seconds},
    }, path)


_STATE_TYPES = {"step": int, "adapter": dict, "optimizer": dict, "scheduler": dict, "rng": torch.Tensor,
                "history": str, "fingerprint": dict}


def load_state(path) -> dict:
    """Read a training checkpoint (``weights_only=True``: tensors and plain containers, no code) and check its
    layout; a damaged or foreign file is reported in one line."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CorruptFileError(f"checkpoint {path} is damaged or not a hello-labels training checkpoint "
                               f"({first_line(err, 120)}): delete it to start over") from err
    wrong = [k for k, kind in _STATE_TYPES.items() if not isinstance(state, dict) or not isinstance(state.get(k), kind)]
    running = state.get("running") if isinstance(state, dict) else None
    if running is not None and not (isinstance(running, dict) and all(
            v is None or isinstance(v, (int, float)) for v in running.values())):
        wrong.append("running")
    if wrong:
        raise CorruptFileError(f"checkpoint {path} is not a hello-labels training checkpoint (bad or missing "
                               f"{', '.join(wrong)}): delete it to start over")
    return state
