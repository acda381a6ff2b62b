"""A tiny study with really trained children, for the export tests.

Everything follows the contract in docs/design.md: trial user_attrs, the budget as a trial constraint,
values = [validation accuracy, MFLOPs], the trained child as an Optuna artifact in a FileSystemArtifactStore.
The child is trained for a few steps at the training resolution (16) on separable synthetic data; its
recorded ``val_acc`` is measured on ``DATA.x_val`` and its MACs/params at the deployment resolution (224).

Trials (budget ``BUDGET`` MFLOPs):

    0  child A, trained, checkpoint spec at the TRAIN resolution   feasible (new-style constraint)   the best
    1  child B (smaller), no artifact_id                           feasible (old list constraint)
    2  child A again, but over budget, higher accuracy             infeasible: never "best"
    3  child B, artifact_id that the store does not hold           feasible
    4  failed trial
    5  child A, trained, checkpoint spec at the DEPLOY resolution  feasible, lower accuracy than 0
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.trial import TrialState, create_trial

from nasprune.builder import NasNet, build
from nasprune.checkpoint import save_checkpoint
from nasprune.cost import count
from nasprune.spec import ArchSpec, DWSBlockSpec, HeadSpec, IRBlockSpec, StemSpec

STUDY = "tiny"
DEPLOY = 224
TRAIN = 16
SEED = 7
RECIPE = {  # shaped like nasprune.search.Recipe.to_dict()
    "data": {"name": "synthetic", "resolution": TRAIN, "subset": 256, "val_size": 128, "data_dir": None},
    "seed": SEED, "parent": {"mode": "shared", "epochs": 2, "batch_size": 64, "lr": 0.1, "sparsity_lambda": 1e-4},
    "finetune": {"epochs": 1, "lr": 0.02}, "latency": {"runs": 5, "threads": 1},
}
RETRAIN = ("nasprune train {arch} --resolution 16 --data synthetic --subset 256 --val-size 128 --batch-size 64 "
           "--lr 0.1 --epochs 3 --seed 7")

CHILD_A = ArchSpec(
    name="child_a", in_channels=1, resolution=DEPLOY, num_classes=4,
    stem=StemSpec(out_channels=8, stride=2, act="hswish"),                                   # 224 -> 112
    blocks=(
        DWSBlockSpec(in_channels=8, out_channels=16, stride=2, se_channels=8),               # -> 56
        IRBlockSpec(in_channels=16, out_channels=16, exp_channels=24, act="hswish",
                    se_channels=8, se_gate="sigmoid"),                                       # residual
        IRBlockSpec(in_channels=16, out_channels=24, exp_channels=40, stride=2, kernel_size=5),  # -> 28
    ),
    head=HeadSpec(conv_channels=32, hidden_features=24, dropout=0.2),
)
CHILD_B = CHILD_A.replace(name="child_b", blocks=(
    DWSBlockSpec(in_channels=8, out_channels=16, stride=2),
    IRBlockSpec(in_channels=16, out_channels=24, exp_channels=32, stride=2),
), head=HeadSpec())
COST_A = count(CHILD_A)
COST_B = count(CHILD_B)
BUDGET = round(COST_A.mflops + 1.0, 1)


class Data(NamedTuple):
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


def make_data(seed: int = 0) -> Data:
    """Four classes: which quadrant of the 16x16 image is brightest (plus noise)."""
    g = torch.Generator().manual_seed(seed)
    n = 384
    y = torch.randint(0, 4, (n,), generator=g)
    x = 0.5 * torch.randn(n, 1, TRAIN, TRAIN, generator=g)
    for i, label in enumerate(y.tolist()):
        r, c = divmod(label, 2)
        x[i, 0, r * 8:(r + 1) * 8, c * 8:(c + 1) * 8] += 1.0
    return Data(x[:256], y[:256], x[256:], y[256:])


DATA = make_data()


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.inference_mode():
        return float((model.eval()(x).argmax(1) == y).float().mean())


def train_child(spec: ArchSpec, steps: int = 30) -> tuple[NasNet, float]:
    """A few Adam steps at the training resolution; returns the model and its validation accuracy."""
    torch.manual_seed(SEED)
    model = build(spec.replace(resolution=TRAIN))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(DATA.x_train), (64,), generator=g)
        loss = torch.nn.functional.cross_entropy(model(DATA.x_train[idx]), DATA.y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), accuracy(model, DATA.x_val, DATA.y_val)


def _attrs(spec: ArchSpec, val_acc: float, **extra) -> dict:
    cost = count(spec)
    return {
        "macs": cost.macs, "params": cost.params, "mflops": cost.macs / 1e6, "latency_ms": 1.5,
        "val_acc": val_acc, "schedule": "custom", "width": 0.5, "criterion": "l1",
        "downsample_layers": spec.downsample_layers(), "se_blocks": [i for i, b in enumerate(spec.blocks) if b.has_se],
        "se_count": spec.se_count, "layers": [{"name": "blocks.2.conv_pw", "before": 48, "after": 40}],
        "feature_sizes": spec.feature_sizes(), "child_spec": spec.to_dict(), "feasible": cost.mflops <= BUDGET,
        **extra,
    }


def _upload(study: optuna.Study, store: FileSystemArtifactStore, model: NasNet, scratch: Path, val_acc: float) -> str:
    path = scratch / "child.pt"
    save_checkpoint(path, model, {"role": "search_child", "val_acc": val_acc, "train_resolution": TRAIN})
    artifact_id = upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=study)
    path.unlink()
    return artifact_id


class StudyInfo(NamedTuple):
    url: str
    artifacts: Path
    model_a: NasNet
    val_acc_a: float


def make_study(root: Path) -> StudyInfo:
    """Create ``root/studies/tiny.db`` and ``root/artifacts`` with the trials listed in the module docstring."""
    (root / "studies").mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{root / 'studies' / f'{STUDY}.db'}"
    artifacts = root / "artifacts"
    artifacts.mkdir(exist_ok=True)
    store = FileSystemArtifactStore(artifacts)
    study = optuna.create_study(study_name=STUDY, storage=url, directions=["maximize", "minimize"])
    for key, value in {"budget_mflops": BUDGET, "recipe": RECIPE, "artifacts_dir": str(artifacts),
                       "deploy_resolution": DEPLOY, "train_resolution": TRAIN,
                       "objectives": ["val_acc", "mflops"]}.items():
        study.set_user_attr(key, value)

    model_a, acc_a = train_child(CHILD_A)
    id_a = _upload(study, store, model_a, root, acc_a)
    deploy_copy = build(CHILD_A)
    deploy_copy.load_state_dict(model_a.state_dict())
    id_a224 = _upload(study, store, deploy_copy, root, acc_a)
    a, b = COST_A.mflops, COST_B.mflops
    trials = [
        create_trial(values=[acc_a, a], user_attrs=_attrs(CHILD_A, acc_a, artifact_id=id_a),
                     constraints={"mflops": a - BUDGET}),
        create_trial(values=[0.5, b], user_attrs=_attrs(CHILD_B, 0.5),
                     system_attrs={"constraints": [b - BUDGET]}),
        create_trial(values=[0.99, a], user_attrs=_attrs(CHILD_A, 0.99, artifact_id=id_a),
                     constraints={"mflops": a - BUDGET + 5.0}),
        create_trial(values=[0.4, b], user_attrs=_attrs(CHILD_B, 0.4, artifact_id="0" * 32),
                     constraints={"mflops": b - BUDGET}),
        create_trial(state=TrialState.FAIL),
        create_trial(values=[acc_a - 0.1, a], user_attrs=_attrs(CHILD_A, acc_a - 0.1, artifact_id=id_a224),
                     constraints={"mflops": a - BUDGET}),
    ]
    study.add_trials(trials)
    return StudyInfo(url, artifacts, model_a, acc_a)


@functools.cache
def shared_study() -> StudyInfo:
    """One study per test process (the export tests only read it); removed at exit."""
    root = Path(tempfile.mkdtemp(prefix="nasprune-export-study-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # a busy 2-core machine: one intra-op thread trains 20x faster than two
    try:
        return make_study(root)
    finally:
        torch.set_num_threads(previous)
