"""A tiny study with really trained children, for the export tests.

Everything follows the contract in docs/design.md: trial user_attrs, the budget as a trial constraint,
values = [validation accuracy, MFLOPs], the trained child as an Optuna artifact in a FileSystemArtifactStore.
The child is trained for five epochs at the training resolution (16) on nasprune's synthetic dataset split as
``RECIPE["data"]`` says; its recorded ``val_acc`` is ``nasprune.train.evaluate(model, DATA, "val")`` and its
MACs/params are counted at the deployment resolution (224).

Trials (budget ``BUDGET`` MFLOPs):

    0  child A, trained, checkpoint spec at the TRAIN resolution   feasible (new-style constraint)   the best
    1  child B (smaller), no artifact_id, 0.6 x A's accuracy       feasible (old list constraint)
    2  child A again, but over budget, higher accuracy             infeasible: never "best"
    3  child B, artifact_id that the store does not hold, 0.5 x A  feasible
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
from nasprune.search.recipe import parse_recipe
from nasprune.spec import ArchSpec, DWSBlockSpec, HeadSpec, IRBlockSpec, StemSpec

STUDY = "tiny"
DEPLOY = 224
TRAIN = 16
SEED = 7
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
RECIPE = parse_recipe({  # stored on the study as nasprune search does: Recipe.to_dict()
    "study": STUDY, "budget_mflops": BUDGET, "space": "fd_mobilenet",
    "data": {"name": "synthetic", "resolution": TRAIN, "subset": 256, "val_size": 128},
    "seed": SEED, "parent": {"mode": "shared", "epochs": 2, "batch_size": 64, "lr": 0.1, "sparsity_lambda": 1e-4},
    "finetune": {"epochs": 1, "lr": 0.02}, "latency": {"runs": 5, "threads": 1},
}, f"{STUDY}.yaml").to_dict()


def load_synthetic():
    """nasprune's synthetic dataset (4 classes, 1 x 16 x 16) split as the recipe says."""
    from nasprune.data import DataConfig, load_data

    d = RECIPE["data"]
    return load_data(DataConfig(name=d["name"], resolution=d["resolution"], subset=d["subset"],
                                val_size=d["val_size"], seed=d["seed"]))


DATA = load_synthetic()


def train_child(spec: ArchSpec) -> tuple[NasNet, float]:
    """Five epochs at the training resolution; returns the model and its validation accuracy (as a search would).

    Tuned to land in between (0.725 here), so that reproducing it exactly means something.
    """
    from nasprune.train import TrainConfig, evaluate, fit

    torch.manual_seed(SEED)
    model = build(spec.replace(resolution=TRAIN))
    fit(model, DATA, TrainConfig(epochs=5, batch_size=32, optimizer="adam", lr=0.005, augment=False, device="cpu",
                                 seed=SEED), progress=False)
    return model.eval(), evaluate(model, DATA, "val")


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
    save_checkpoint(path, model, {"role": "search_child", "val_acc": val_acc, "data": dict(RECIPE["data"]),
                                  "train_resolution": TRAIN, "deploy_resolution": DEPLOY})
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
        create_trial(values=[0.6 * acc_a, b], user_attrs=_attrs(CHILD_B, 0.6 * acc_a),
                     system_attrs={"constraints": [b - BUDGET]}),
        create_trial(values=[min(1.0, acc_a + 0.2), a], user_attrs=_attrs(CHILD_A, min(1.0, acc_a + 0.2),
                                                                           artifact_id=id_a),
                     constraints={"mflops": a - BUDGET + 5.0}),
        create_trial(values=[0.5 * acc_a, b], user_attrs=_attrs(CHILD_B, 0.5 * acc_a, artifact_id="0" * 32),
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
